"""Thin Celery tasks of the notifications: they call a service and nothing else."""

from __future__ import annotations

from celery import shared_task

from apps.staff.services import activity_summary_log, incident_notify, low_stock_scan


@shared_task(
    name="staff.incident_notify",
    autoretry_for=(OSError,),  # the mail server unreachable: try again
    retry_backoff=True,
    max_retries=5,
    time_limit=60,
    soft_time_limit=50,
)
def incident_notify_task(incident_id: int) -> int:
    return incident_notify(incident_id=incident_id)


@shared_task(name="staff.low_stock_scan", time_limit=5 * 60, soft_time_limit=4 * 60)
def low_stock_scan_task() -> dict[str, int]:
    return low_stock_scan()


@shared_task(name="staff.activity_summary", time_limit=60, soft_time_limit=50)
def activity_summary_task(window_s: int = 60) -> dict[str, int]:
    return activity_summary_log(window_s=window_s)
