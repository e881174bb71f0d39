"""Thin Celery tasks of the core app: they call a service and nothing else."""

from __future__ import annotations

from celery import shared_task

from apps.core.services import planner_statistics_refresh


@shared_task(name="core.planner_statistics_refresh", time_limit=10 * 60, soft_time_limit=9 * 60)
def planner_statistics_refresh_task() -> bool:
    """Hourly: fresh planner statistics where the server's autovacuum is off."""
    return planner_statistics_refresh()
