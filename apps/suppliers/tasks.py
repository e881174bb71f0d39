"""Thin Celery tasks: ids in, a service call, retries declared."""

from __future__ import annotations

import structlog
from celery import shared_task

from apps.suppliers.models import Supplier
from apps.suppliers.services.mappings import mapping_validate
from apps.suppliers.services.order_check import OrderCheckUnavailable, order_check_request, order_check_unanswered
from apps.suppliers.services.polling import supplier_poll as supplier_poll_service
from apps.suppliers.services.runs import feed_runs_abandon as feed_runs_abandon_service
from apps.suppliers.services.staleness import suppliers_staleness_apply

log = structlog.get_logger("stockroom.suppliers.tasks")

ORDER_CHECK_RETRIES = 5


@shared_task(name="suppliers.supplier_poll", acks_late=True, soft_time_limit=1800, time_limit=1900)
def supplier_poll(supplier_id: int) -> int:
    return len(supplier_poll_service(supplier_id=supplier_id))


@shared_task(name="suppliers.feed_runs_abandon", acks_late=True, soft_time_limit=120)
def feed_runs_abandon() -> int:
    """Runs whose worker died are marked abandoned, and their suppliers polled again."""
    return len(feed_runs_abandon_service(poll_again=supplier_poll.delay))


@shared_task(name="suppliers.mappings_validate", acks_late=True, soft_time_limit=600)
def mappings_validate() -> int:
    checked = 0
    for supplier in Supplier.objects.select_related("location").filter(is_active=True):
        mapping_validate(supplier=supplier)
        checked += 1
    return checked


@shared_task(name="suppliers.suppliers_staleness", acks_late=True, soft_time_limit=300)
def suppliers_staleness() -> int:
    return len(suppliers_staleness_apply())


@shared_task(
    bind=True,
    name="suppliers.supplier_order_check",
    acks_late=True,
    max_retries=ORDER_CHECK_RETRIES,
    soft_time_limit=120,
)
def supplier_order_check(self, order_id: int, location_id: int) -> str:
    try:
        return order_check_request(order_id=order_id, location_id=location_id)
    except OrderCheckUnavailable as err:
        if self.request.retries >= self.max_retries:
            order_check_unanswered(order_id=order_id, location_id=location_id, error=str(err))
            return "unanswered"
        countdown = min(300, 2 ** (self.request.retries + 1))
        raise self.retry(exc=err, countdown=countdown) from err
