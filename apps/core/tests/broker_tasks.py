"""A task for the broker tests: it notes in Redis which worker started and finished it, and runs for a while."""

from __future__ import annotations

import time

import redis
from celery import shared_task
from django.conf import settings


@shared_task(name="tests.broker.hold", bind=True, acks_late=True, ignore_result=True)
def hold(self, key: str, seconds: float) -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.rpush(key, f"start {self.request.hostname} {time.time()}")
    time.sleep(seconds)
    client.rpush(key, f"done {self.request.hostname} {time.time()}")
