"""Supplier health: last success, failures in a row, and the circuit breaker that stops polling a dead supplier."""

from __future__ import annotations

from datetime import timedelta

import structlog
from django.db.models import F
from django.utils import timezone

from apps.suppliers.models import Supplier

log = structlog.get_logger("stockroom.suppliers.health")

DEFAULT_BREAKER_THRESHOLD = 5
DEFAULT_BREAKER_COOLDOWN_S = 300


def breaker_threshold(supplier: Supplier) -> int:
    return int((supplier.settings or {}).get("breaker_threshold", DEFAULT_BREAKER_THRESHOLD))


def breaker_cooldown(supplier: Supplier) -> timedelta:
    return timedelta(seconds=float((supplier.settings or {}).get("breaker_cooldown_s", DEFAULT_BREAKER_COOLDOWN_S)))


def supplier_health_record(*, supplier: Supplier, ok: bool, error: str = "", stale: bool | None = None) -> Supplier:
    """Record the outcome of one attempt; opens the breaker after too many failures in a row."""
    now = timezone.now()
    if ok:
        changes: dict[str, object] = {
            "last_success_at": now,
            "last_attempt_at": now,
            "failures_in_row": 0,
            "breaker_state": Supplier.Breaker.CLOSED,
            "breaker_opened_at": None,
        }
        if stale is not None:
            changes["is_stale"] = stale
        Supplier.objects.filter(pk=supplier.pk).update(**changes)
    else:
        Supplier.objects.filter(pk=supplier.pk).update(last_attempt_at=now, failures_in_row=F("failures_in_row") + 1)
        supplier.refresh_from_db(fields=["failures_in_row", "breaker_state"])
        trial_failed = supplier.breaker_state == Supplier.Breaker.HALF_OPEN
        if trial_failed or (
            supplier.breaker_state == Supplier.Breaker.CLOSED
            and supplier.failures_in_row >= breaker_threshold(supplier)
        ):
            Supplier.objects.filter(pk=supplier.pk).update(breaker_state=Supplier.Breaker.OPEN, breaker_opened_at=now)
            log.warning("supplier_breaker_open", supplier=supplier.code, failures=supplier.failures_in_row, error=error)
    supplier.refresh_from_db(
        fields=[
            "last_success_at",
            "last_attempt_at",
            "failures_in_row",
            "breaker_state",
            "breaker_opened_at",
            "is_stale",
        ]
    )
    return supplier


def supplier_breaker_allows(*, supplier: Supplier) -> bool:
    """May we poll now? An open breaker lets one trial through (half-open) once its cool-down is over."""
    if supplier.breaker_state != Supplier.Breaker.OPEN:
        return True
    opened = supplier.breaker_opened_at or timezone.now()
    if timezone.now() - opened < breaker_cooldown(supplier):
        return False
    moved = Supplier.objects.filter(pk=supplier.pk, breaker_state=Supplier.Breaker.OPEN).update(
        breaker_state=Supplier.Breaker.HALF_OPEN
    )
    supplier.refresh_from_db(fields=["breaker_state"])
    if moved:
        log.info("supplier_breaker_half_open", supplier=supplier.code)
    return bool(moved)
