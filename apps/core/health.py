"""Is each dependency answering? Used by /healthz (operators), /healthz/ready (load balancers) and
/healthz/live (process supervisors)."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connection

from apps.core.secrets import secrets_unreadable


def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        check()
    except Exception as err:  # any failure means "down"; the reason is reported
        return {"ok": False, "error": f"{type(err).__name__}: {err}"[:300]}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    from django_redis import get_redis_connection

    get_redis_connection("default").ping()


def _broker() -> None:
    from inventory_site.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=1)


def _secrets() -> dict[str, Any]:
    """Stored secrets no configured key opens (STOCKROOM_SECRETS_KEY changed without a rotation)."""
    started = time.perf_counter()
    try:
        unreadable = secrets_unreadable()
    except Exception as err:  # the database went away meanwhile: that check says so
        return {"ok": False, "error": f"{type(err).__name__}"}
    if unreadable:
        return {
            "ok": False,
            "error": f"Secrets no key of STOCKROOM_SECRETS_KEY opens: {', '.join(unreadable)}"[:300],
            "unreadable": unreadable,
        }
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def dependency_states() -> dict[str, dict[str, Any]]:
    states = {"database": _timed(_database), "redis": _timed(_redis), "broker": _timed(_broker)}
    if not states["database"]["ok"]:
        connection.close_if_unusable_or_obsolete()
    else:
        states["secrets"] = _secrets()
    return states


def overall_status(states: dict[str, dict[str, Any]]) -> tuple[str, int]:
    if not states["database"]["ok"]:
        return "down", 503
    if not all(states[name]["ok"] for name in ("redis", "broker")) or not states.get("secrets", {"ok": True})["ok"]:
        return "degraded", 200
    return "ok", 200


def sources() -> dict[str, str]:
    return {"database": settings.DATABASE_SOURCE, "redis": settings.REDIS_SOURCE}


def readiness_states() -> dict[str, dict[str, Any]]:
    """What a web host needs to take orders at full speed: PostgreSQL and Redis, nothing slower.

    With Redis away the process's breaker (``apps.core.redis_breaker``) answers at once, so a
    load balancer polling this is told 503 within a Redis timeout, and told 200 again by the first
    trial that reaches Redis.
    """
    states = {"database": _timed(_database), "redis": _timed(_redis)}
    if not states["database"]["ok"]:
        connection.close_if_unusable_or_obsolete()
    return states


def ready(states: dict[str, dict[str, Any]]) -> bool:
    return all(state["ok"] for state in states.values())
