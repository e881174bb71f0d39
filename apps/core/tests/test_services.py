"""The database upkeep job: fresh planner statistics where the server runs without autovacuum."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

from apps.core.services import planner_statistics_refresh
from apps.core.tasks import planner_statistics_refresh_task

pytestmark = pytest.mark.django_db


def _reltuples(table: str) -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        return cursor.fetchone()[0]


def _autovacuum() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        return cursor.fetchone()[0] == "on"


def test_statistics_are_refreshed_only_where_autovacuum_is_off():
    assert planner_statistics_refresh() is (not _autovacuum())


def test_a_forced_refresh_gives_every_table_statistics():
    assert planner_statistics_refresh(force=True) is True
    assert _reltuples("orders_reservation") >= 0  # -1: never analysed


def test_the_refresh_is_an_hourly_beat_job():
    job = settings.CELERY_BEAT_SCHEDULE["core-planner-statistics"]
    assert job["task"] == planner_statistics_refresh_task.name and job["schedule"] == 3600.0
    assert planner_statistics_refresh_task.apply().get() is (not _autovacuum())
