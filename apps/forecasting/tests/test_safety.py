"""safety_apply (the only writer of StockLevel.safety), the slot apply job, and staff overrides."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.catalog.models import StockLevel
from apps.catalog.signals import Tier, stock_changed
from apps.catalog.stock.safety import safety_apply
from apps.catalog.tests.factories import ItemFactory, product_of, stock
from apps.forecasting.errors import InvalidOverride
from apps.forecasting.models import SafetyAudit, SafetyForecast, SafetyOverride
from apps.forecasting.services.demand import slot_of
from apps.forecasting.services.overrides import (
    overrides_expire,
    safety_current_slot_apply,
    safety_override_clear,
    safety_override_set,
)


@pytest.fixture
def heard():
    calls = []

    def listener(sender, *, pairs, priority, reason, **kwargs):
        calls.append((sorted(pairs), priority, reason))

    stock_changed.connect(listener, dispatch_uid="forecasting-test")
    yield calls
    stock_changed.disconnect(dispatch_uid="forecasting-test")


def test_safety_apply_changes_only_what_differs_and_tells_channels(item, store, heard):
    other = ItemFactory(sku="OTHER")
    stock(item, store, 10, safety=1)
    stock(other, store, 10, safety=4)
    heard.clear()

    changes = safety_apply(values={(item.pk, store.pk): 3, (other.pk, store.pk): 4}, reason="test")

    assert [(c.item_id, c.old, c.new, c.old_atp, c.new_atp) for c in changes] == [(item.pk, 1, 3, 9, 7)]
    assert StockLevel.objects.get(item=item).safety == 3
    assert heard == [([(item.pk, store.pk)], Tier.BACKGROUND, "test")]
    # Nothing to change: no write, no sync.
    heard.clear()
    assert safety_apply(values={(item.pk, store.pk): 3}, reason="test") == []
    assert heard == []


def test_safety_that_closes_the_last_units_is_a_tier_one_sync(item, store, heard):
    from apps.channels.models import Channel, ChannelLocation, Listing, SyncWork

    other = ItemFactory(sku="OTHER")
    channel = Channel.objects.create(code="shop1", name="Webshop")
    ChannelLocation.objects.create(channel=channel, location=store)
    closing = Listing.objects.create(channel=channel, channel_sku="C", product=product_of("P-C", {item: 1}))
    lowered = Listing.objects.create(channel=channel, channel_sku="L", product=product_of("P-L", {other: 1}))
    stock(item, store, 5)
    stock(other, store, 10)
    SyncWork.objects.all().delete()
    heard.clear()
    safety_apply(values={(item.pk, store.pk): 5, (other.pk, store.pk): 2}, reason="test")
    # One announcement for both levels; the listing it closes goes out at tier 1, the other waits.
    assert heard == [([(item.pk, store.pk), (other.pk, store.pk)], Tier.BACKGROUND, "test")]
    assert SyncWork.objects.get(listing=closing).priority == Tier.SALE
    assert SyncWork.objects.get(listing=lowered).priority == Tier.BACKGROUND


def test_safety_apply_refuses_negative_values(item, store):
    stock(item, store, 5, safety=2)
    with pytest.raises(ValueError):
        safety_apply(values={(item.pk, store.pk): -1}, reason="test")
    assert StockLevel.objects.get(item=item).safety == 2


def test_safety_apply_writes_no_ledger_rows(item, store):
    stock(item, store, 5)
    before = item.movements.count()
    safety_apply(values={(item.pk, store.pk): 2}, reason="test")
    assert item.movements.count() == before


def test_override_takes_effect_at_once_and_is_audited(item, store, staff_user, heard):
    stock(item, store, 10, safety=1)
    heard.clear()
    until = timezone.now() + timedelta(days=2)

    audit = safety_override_set(
        item=item, location=store, value=6, reason="Promo Saturday", valid_until=until, user=staff_user
    )

    level = StockLevel.objects.get(item=item, location=store)
    assert (level.safety, level.atp) == (6, 4)
    assert (audit.who, audit.kind, audit.old_safety, audit.new_safety) == ("staffer", "override_set", 1, 6)
    assert (audit.old_override, audit.new_override, audit.reason) == (None, 6, "Promo Saturday")
    assert heard == [([(item.pk, store.pk)], Tier.MANUAL, "safety override")]
    assert SafetyOverride.objects.get(item=item).created_by == staff_user


@pytest.mark.parametrize(
    ("value", "reason", "days", "field"),
    [
        (-1, "x", 1, "value"),
        ("7", "x", 1, "value"),
        (True, "x", 1, "value"),
        (3, "  ", 1, "reason"),
        (3, "x", -1, "valid_until"),
    ],
)
def test_invalid_overrides_change_nothing(item, store, staff_user, value, reason, days, field):
    stock(item, store, 10, safety=1)
    with pytest.raises(InvalidOverride) as err:
        safety_override_set(
            item=item,
            location=store,
            value=value,
            reason=reason,
            valid_until=timezone.now() + timedelta(days=days),
            user=staff_user,
        )
    assert err.value.data["field"] == field
    assert StockLevel.objects.get(item=item).safety == 1
    assert not SafetyOverride.objects.exists() and not SafetyAudit.objects.exists()


def test_clearing_returns_to_the_forecast_of_the_current_slot(item, store, staff_user):
    stock(item, store, 10)
    SafetyForecast.objects.create(
        item=item, location=store, slot=slot_of(timezone.now()), value=2, computed_at=timezone.now()
    )
    safety_override_set(item=item, location=store, value=8, reason="count pending", valid_until=None, user=staff_user)

    audit = safety_override_clear(item=item, location=store, reason="count done", user=staff_user)

    assert (audit.kind, audit.old_safety, audit.new_safety, audit.old_override) == ("override_cleared", 8, 2, 8)
    assert StockLevel.objects.get(item=item).safety == 2
    assert safety_override_clear(item=item, location=store, reason="again", user=staff_user) is None


def test_the_slot_job_follows_the_forecast_and_expires_overrides(item, store, staff_user):
    other = ItemFactory(sku="OTHER")
    untouched = ItemFactory(sku="NO-FORECAST")
    stock(item, store, 10)
    stock(other, store, 10)
    stock(untouched, store, 10, safety=4)
    now = timezone.now()
    slot = slot_of(now)
    SafetyForecast.objects.bulk_create(
        [
            SafetyForecast(item=item, location=store, slot=slot, value=3, computed_at=now),
            SafetyForecast(item=other, location=store, slot=slot, value=2, computed_at=now),
        ]
    )
    safety_override_set(
        item=other, location=store, value=7, reason="launch", valid_until=now + timedelta(minutes=5), user=staff_user
    )

    applied = safety_current_slot_apply(at=now)
    assert (applied.changed, applied.expired) == (1, 0)
    safety = dict(StockLevel.objects.values_list("item__sku", "safety"))
    assert safety == {"HOOD-M": 3, "OTHER": 7, "NO-FORECAST": 4}

    later = now + timedelta(minutes=10)
    SafetyForecast.objects.filter(slot=slot).update(slot=slot_of(later))  # same slot values whatever the hour
    applied = safety_current_slot_apply(at=later)
    assert applied.expired == 1
    assert StockLevel.objects.get(item=other).safety == 2
    expired = SafetyAudit.objects.get(kind="override_expired")
    assert (expired.who, expired.old_safety, expired.new_safety, expired.reason) == ("system", 7, 2, "expired: launch")
    assert overrides_expire(at=later) == 0
