"""Reads about suppliers for dashboards and health pages."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from apps.suppliers.models import Supplier


def feed_freshness() -> list[dict[str, Any]]:
    """One row per active supplier: how old its last good feed is and whether its stock still sells.

    Keys: supplier (code), name, last_success_at, age_minutes, max_age_minutes, stale,
    failures_in_row, breaker. A supplier that never delivered a good feed is stale.
    """
    now = timezone.now()
    rows = []
    for code, name, last_success, max_age, failures, breaker in Supplier.objects.filter(is_active=True).values_list(
        "code", "name", "last_success_at", "max_age_minutes", "failures_in_row", "breaker_state"
    ):
        age = (now - last_success).total_seconds() / 60 if last_success is not None else None
        rows.append(
            {
                "supplier": code,
                "name": name,
                "last_success_at": last_success,
                "age_minutes": age,
                "max_age_minutes": max_age,
                "stale": age is None or age > max_age,
                "failures_in_row": failures,
                "breaker": breaker,
            }
        )
    return rows
