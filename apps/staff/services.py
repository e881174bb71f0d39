"""Notifications by e-mail: incidents as they open, and stock that fell to its safety level.

Each staff user chooses in the admin (My notification settings); a user without settings gets
both. Only active staff users with an e-mail address and the permission to see what the mail is
about (``catalog.view_incident``, ``catalog.view_stocklevel``) are written to, and store staff hear
only about their own locations (``apps.catalog.access``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import structlog
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from apps.catalog.access import location_ids_for
from apps.catalog.models import Incident
from apps.catalog.stock.atp import atp_sql, location_sells_sql
from apps.catalog.units import quantity_text
from apps.staff.models import NotificationPreference
from apps.staff.selectors import activity_summary

log = structlog.get_logger("stockroom.notifications")
summary_log = structlog.get_logger("stockroom.summary")

LOW_STOCK_LINES_SHOWN = 50


def notification_preference_get(*, user: Any) -> NotificationPreference:
    """The user's settings, made with the defaults on first use."""
    preference, _ = NotificationPreference.objects.get_or_create(user=user)
    return preference


def notification_preference_set(*, user: Any, incidents: bool, low_stock: bool) -> NotificationPreference:
    preference, _ = NotificationPreference.objects.update_or_create(
        user=user, defaults={"incidents": incidents, "low_stock": low_stock}
    )
    return preference


def _recipients(*, topic: str, permission: str) -> dict[frozenset[int] | None, list[str]]:
    """E-mail addresses of active staff who want ``topic`` (a NotificationPreference field) and may see it,
    by the locations they see: {None (every location) or the location ids: addresses}."""
    users = get_user_model().objects.filter(is_active=True, is_staff=True).exclude(email="")
    opted_out = NotificationPreference.objects.filter(**{topic: False}).values("user_id")
    by_scope: dict[frozenset[int] | None, set[str]] = defaultdict(set)
    for user in users.exclude(pk__in=opted_out):
        if user.is_superuser or user.has_perm(permission):
            ids = location_ids_for(user)
            by_scope[None if ids is None else frozenset(ids)].add(user.email)
    return {scope: sorted(emails) for scope, emails in by_scope.items()}


def _admin_link(path: str) -> str:
    return settings.STOCKROOM_BASE_URL.rstrip("/") + path


def incident_notify(*, incident_id: int) -> int:
    """Mail an opened incident to who wants it; the number of recipients."""
    incident = Incident.objects.select_related("item", "location").filter(pk=incident_id).first()
    if incident is None or incident.status != Incident.Status.OPEN:
        return 0  # gone or settled before the mail went out
    recipients = sorted(
        {
            email
            for scope, emails in _recipients(topic="incidents", permission="catalog.view_incident").items()
            if scope is None or incident.location_id in scope
            for email in emails
        }
    )
    if not recipients:
        return 0
    where = ", ".join(
        part
        for part in (
            incident.item.sku if incident.item else "",
            f"at {incident.location.code}" if incident.location else "",
        )
        if part
    )
    subject = f"[Stockroom] {incident.get_kind_display()}" + (f": {where}" if where else "")
    body = "\n".join(
        line
        for line in (
            f"{incident.get_kind_display()} (incident {incident.pk}).",
            f"Item: {incident.item}" if incident.item else "",
            f"Location: {incident.location}" if incident.location else "",
            f"Short: {_short_text(incident)}" if incident.shortfall else "",
            f"Reference: {incident.reference}" if incident.reference else "",
            "",
            incident.detail,
            "",
            f"Open it: {_admin_link(reverse('admin:catalog_incident_change', args=[incident.pk]))}",
        )
        if line is not None
    )
    send_mail(subject[:200], body, None, recipients)
    log.info("incident_mailed", incident=incident.pk, recipients=len(recipients))
    return len(recipients)


# Levels at a selling location (``stock.atp``: active, its stock not past ``stock_valid_until``) whose
# stock (on hand less reserved) is at or below their safety stock, that is with nothing left to promise;
# the ones not yet reported get an alert row, and recovered ones lose theirs. A supplier location whose
# feed is stale sells nothing until it is fresh again: that is the feed's alert, not low stock.
_LOW = f"""
SELECT s.item_id, s.location_id
  FROM catalog_stocklevel s
  JOIN catalog_location loc ON loc.id = s.location_id AND {location_sells_sql("loc")}
  JOIN catalog_item i ON i.id = s.item_id AND i.is_active
 WHERE ({atp_sql("s", "loc")}) = 0
"""
_REPORT_NEW = f"""
INSERT INTO staff_lowstockalert (item_id, location_id, reported_at)
SELECT low.item_id, low.location_id, now() FROM ({_LOW}) low
ON CONFLICT (item_id, location_id) DO NOTHING
RETURNING item_id, location_id
"""
_FORGET_RECOVERED = f"""
DELETE FROM staff_lowstockalert a
 WHERE NOT EXISTS (SELECT 1 FROM ({_LOW}) low WHERE low.item_id = a.item_id AND low.location_id = a.location_id)
"""


def _short_text(incident: Any) -> str:
    """The shortfall in its item's unit ("2 pcs"); a bare number where the incident names no item."""
    return quantity_text(incident.shortfall, incident.item.unit) if incident.item else str(incident.shortfall)


def low_stock_scan() -> dict[str, int]:
    """Report stock newly at or below its safety level in one mail; forget pairs that recovered.

    Each pair is reported once until it recovers (the alert row's unique pair makes two scans
    at once report it once). The mail goes after the rows are committed.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_FORGET_RECOVERED)
        recovered = cursor.rowcount
        cursor.execute(_REPORT_NEW)
        new_pairs = [(int(item), int(location)) for item, location in cursor.fetchall()]
    mailed = _low_stock_mail(new_pairs) if new_pairs else 0
    return {"new": len(new_pairs), "recovered": recovered, "recipients": mailed}


def _low_stock_mail(pairs: Sequence[tuple[int, int]]) -> int:
    """One mail per set of locations seen: store staff read only their own locations' lines."""
    mailed = 0
    for scope, recipients in _recipients(topic="low_stock", permission="catalog.view_stocklevel").items():
        seen = [pair for pair in pairs if scope is None or pair[1] in scope]
        if seen:
            mailed += _low_stock_send(seen, recipients)
    return mailed


def _low_stock_send(pairs: Sequence[tuple[int, int]], recipients: list[str]) -> int:
    from apps.catalog.models import StockLevel

    wanted = sorted(pairs)[:LOW_STOCK_LINES_SHOWN]
    levels = {
        (level.item_id, level.location_id): level
        for level in StockLevel.objects.select_related("item", "location").filter(
            item_id__in=[i for i, _ in wanted], location_id__in=[loc for _, loc in wanted]
        )
    }
    lines = []
    for pair in wanted:
        level = levels.get(pair)
        if level is not None:
            lines.append(
                f"- {level.item.sku} {level.item.name} at {level.location.code}: "
                f"{quantity_text(level.offline_usable, level.item.unit)} on hand and not reserved, "
                f"safety stock {quantity_text(level.safety, level.item.unit)}"
            )
    if len(pairs) > len(wanted):
        lines.append(f"... and {len(pairs) - len(wanted)} more.")
    subject = f"[Stockroom] Low stock: {len(pairs)} item(s) at or below safety"
    body = "\n".join(
        [
            "Stock (on hand less reserved) fell to its safety level or below:",
            "",
            *lines,
            "",
            f"Stock levels: {_admin_link(reverse('admin:catalog_stocklevel_changelist'))}",
        ]
    )
    send_mail(subject, body, None, recipients)
    log.info("low_stock_mailed", pairs=len(pairs), recipients=len(recipients))
    return len(recipients)


def activity_summary_log(*, window_s: int) -> dict[str, int]:
    """The worker's one `summary` line of the last ``window_s`` seconds (beat sends it every minute)."""
    fields = activity_summary(until=timezone.now(), window_s=window_s).as_log()
    summary_log.info("summary", **fields)
    return fields
