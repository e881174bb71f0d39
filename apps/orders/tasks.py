"""Thin Celery tasks: ids in, a service call, retries declared."""

from __future__ import annotations

from celery import shared_task

from apps.orders.services.holds import hold_release_expired


@shared_task(name="orders.holds_release_expired", acks_late=True, soft_time_limit=50, time_limit=55, ignore_result=True)
def holds_release_expired() -> int:
    """Every minute (beat): give the stock of lapsed holds back."""
    return hold_release_expired()
