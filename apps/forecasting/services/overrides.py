"""Effective safety stock (override if valid, else the current slot's forecast) and staff overrides of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import connection, transaction
from django.utils import timezone

from apps.catalog.locks import levels_for_update
from apps.catalog.models import Item, Location
from apps.catalog.signals import Tier
from apps.catalog.stock.safety import MAX_SAFETY, safety_apply
from apps.forecasting.errors import InvalidOverride
from apps.forecasting.models import SafetyAudit, SafetyOverride
from apps.forecasting.services.demand import slot_of

log = structlog.get_logger("stockroom.safety")

MAX_OVERRIDE = 10**9
MAX_REASON = 300

# Per level: the override valid at %(at)s, the forecast of %(slot)s, and the item's floor.
EFFECTIVE_SQL = """
SELECT l.item_id, l.location_id, l.safety, o.value AS override, f.value AS forecast, i.safety_min
  FROM catalog_stocklevel l
  JOIN catalog_item i ON i.id = l.item_id
  LEFT JOIN forecasting_safetyoverride o
         ON o.item_id = l.item_id AND o.location_id = l.location_id
        AND (o.valid_until IS NULL OR o.valid_until > %(at)s)
  LEFT JOIN forecasting_safetyforecast f
         ON f.item_id = l.item_id AND f.location_id = l.location_id AND f.slot = %(slot)s
 WHERE (%(items)s::bigint[] IS NULL OR l.item_id = ANY(%(items)s::bigint[]))
   AND (%(locations)s::bigint[] IS NULL OR l.location_id = ANY(%(locations)s::bigint[]))
"""


@dataclass(frozen=True)
class Effective:
    item_id: int
    location_id: int
    current: int
    override: int | None
    forecast: int | None
    safety_min: int

    @property
    def value(self) -> int:
        """Override if valid, else the slot's forecast, else the item's floor."""
        if self.override is not None:
            return self.override
        if self.forecast is not None:
            return self.forecast
        return self.safety_min

    @property
    def known(self) -> bool:
        """Whether anything (override or forecast) says what the safety stock should be."""
        return self.override is not None or self.forecast is not None


def safety_effective(
    *, at: datetime | None = None, item_ids: Sequence[int] | None = None, location_ids: Sequence[int] | None = None
) -> list[Effective]:
    at = at or timezone.now()
    params: dict[str, Any] = {
        "at": at,
        "slot": slot_of(at),
        "items": list(item_ids) if item_ids is not None else None,
        "locations": list(location_ids) if location_ids is not None else None,
    }
    with connection.cursor() as cursor:
        cursor.execute(EFFECTIVE_SQL, params)
        return [Effective(*row) for row in cursor.fetchall()]


@dataclass(frozen=True)
class ApplyResult:
    levels: int
    changed: int
    expired: int


def safety_current_slot_apply(*, at: datetime | None = None) -> ApplyResult:
    """Expire overrides past their time, then set every level's safety to its effective value now.

    Levels with neither a forecast nor an override are left as they are: nothing is known
    about them yet, and a blind reset could open stock someone deliberately held back.
    """
    at = at or timezone.now()
    expired = overrides_expire(at=at)
    effective = [e for e in safety_effective(at=at) if e.known]
    changes = safety_apply(
        values={(e.item_id, e.location_id): e.value for e in effective},
        reason=f"safety forecast slot {slot_of(at)}",
        priority=Tier.BACKGROUND,
    )
    log.info("safety_slot_applied", slot=slot_of(at), levels=len(effective), changed=len(changes), expired=expired)
    return ApplyResult(levels=len(effective), changed=len(changes), expired=expired)


def _validate(*, value: object, reason: str, valid_until: datetime | None, at: datetime) -> tuple[int, str]:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOverride("Enter a whole number of units.", field="value")
    if value < 0:
        raise InvalidOverride("Safety stock cannot be negative.", field="value")
    if value > MAX_OVERRIDE:
        raise InvalidOverride(f"Safety stock must be at most {MAX_OVERRIDE}.", field="value")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidOverride("Say why: the reason is kept in the history.", field="reason")
    if len(reason) > MAX_REASON:
        raise InvalidOverride(f"Keep the reason under {MAX_REASON} characters.", field="reason")
    if valid_until is not None and valid_until <= at:
        raise InvalidOverride("Valid until must be in the future.", field="valid_until")
    return value, reason


def _who(user: AbstractBaseUser | AnonymousUser | None) -> tuple[int | None, str]:
    if user is None or not user.is_authenticated:
        return None, "system"
    return user.pk, user.get_username()


def safety_override_set(
    *,
    item: Item,
    location: Location,
    value: int,
    reason: str,
    valid_until: datetime | None,
    user: AbstractBaseUser | AnonymousUser | None,
) -> SafetyAudit:
    """Save staff's safety stock for this level; it takes effect at once (channels re-sync) and is audited."""
    now = timezone.now()
    value, reason = _validate(value=value, reason=reason, valid_until=valid_until, at=now)
    assert value <= MAX_SAFETY
    user_id, who = _who(user)
    with transaction.atomic():
        # Serialises concurrent edits of the same level; safety_apply re-takes the same lock.
        (level,) = levels_for_update([(item.pk, location.pk)])
        previous = SafetyOverride.objects.filter(item=item, location=location).first()
        SafetyOverride.objects.update_or_create(
            item=item,
            location=location,
            defaults={"value": value, "reason": reason, "valid_until": valid_until, "created_by_id": user_id},
        )
        safety_apply(values={(item.pk, location.pk): value}, reason="safety override", priority=Tier.MANUAL)
        audit = SafetyAudit.objects.create(
            item=item,
            location=location,
            kind=SafetyAudit.Kind.OVERRIDE_SET,
            user_id=user_id,
            who=who,
            old_safety=level.safety,
            new_safety=value,
            old_override=previous.value if previous else None,
            new_override=value,
            valid_until=valid_until,
            reason=reason,
        )
    log.info("safety_override_set", item=item.sku, location=location.code, value=value, by=who)
    return audit


def safety_override_clear(
    *, item: Item, location: Location, reason: str, user: AbstractBaseUser | AnonymousUser | None
) -> SafetyAudit | None:
    """Drop staff's override; the level goes back to the forecast at once. None when there was none."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidOverride("Say why: the reason is kept in the history.", field="reason")
    user_id, who = _who(user)
    with transaction.atomic():
        (level,) = levels_for_update([(item.pk, location.pk)])
        previous = SafetyOverride.objects.filter(item=item, location=location).first()
        if previous is None:
            return None
        previous.delete()
        (effective,) = safety_effective(item_ids=[item.pk], location_ids=[location.pk])
        safety_apply(values={(item.pk, location.pk): effective.value}, reason="safety override", priority=Tier.MANUAL)
        audit = SafetyAudit.objects.create(
            item=item,
            location=location,
            kind=SafetyAudit.Kind.OVERRIDE_CLEARED,
            user_id=user_id,
            who=who,
            old_safety=level.safety,
            new_safety=effective.value,
            old_override=previous.value,
            new_override=None,
            reason=reason[:MAX_REASON],
        )
    log.info("safety_override_cleared", item=item.sku, location=location.code, by=who)
    return audit


def overrides_expire(*, at: datetime | None = None) -> int:
    """Remove overrides past their valid_until, audit each, and put the forecast back in force.

    Like every override writer, it takes the level locks first, so it cannot deadlock with staff edits.
    """
    at = at or timezone.now()
    candidates = sorted(SafetyOverride.objects.filter(valid_until__lte=at).values_list("item_id", "location_id"))
    if not candidates:
        return 0
    with transaction.atomic():
        levels = {(lv.item_id, lv.location_id): lv for lv in levels_for_update(candidates)}
        expired = [
            o
            for o in SafetyOverride.objects.filter(valid_until__lte=at).order_by("item_id", "location_id")
            if (o.item_id, o.location_id) in levels
        ]
        if not expired:
            return 0
        pairs = [(o.item_id, o.location_id) for o in expired]
        SafetyOverride.objects.filter(pk__in=[o.pk for o in expired]).delete()
        effective = {
            (e.item_id, e.location_id): e.value
            for e in safety_effective(
                at=at, item_ids=sorted({p[0] for p in pairs}), location_ids=sorted({p[1] for p in pairs})
            )
            if (e.item_id, e.location_id) in levels
        }
        safety_apply(values=effective, reason="safety override expired", priority=Tier.BACKGROUND)
        SafetyAudit.objects.bulk_create(
            [
                SafetyAudit(
                    item_id=o.item_id,
                    location_id=o.location_id,
                    kind=SafetyAudit.Kind.OVERRIDE_EXPIRED,
                    who="system",
                    old_safety=levels[(o.item_id, o.location_id)].safety,
                    new_safety=effective.get((o.item_id, o.location_id), levels[(o.item_id, o.location_id)].safety),
                    old_override=o.value,
                    new_override=None,
                    valid_until=o.valid_until,
                    reason=f"expired: {o.reason}"[:MAX_REASON],
                )
                for o in expired
            ]
        )
    log.info("safety_overrides_expired", count=len(expired))
    return len(expired)
