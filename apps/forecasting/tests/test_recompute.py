from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apps.catalog.models import Location, Movement
from apps.catalog.stock.bulk import feed_run_reference
from apps.catalog.tests.factories import ItemFactory, LocationFactory, stock
from apps.forecasting.models import SafetyForecast
from apps.forecasting.services.math import safety_level
from apps.forecasting.services.recompute import forecast_recompute
from apps.forecasting.tests.conftest import NOW
from apps.forecasting.tests.factories import ledger_at
from apps.suppliers.tests.factories import make_supplier


def _mondays_at_ten(units_per_week, kind=Movement.Kind.POS_SALE):
    """Sales (POS by default) on the Mondays 10:xx of the four weeks before NOW's week, oldest first."""
    first = datetime(2026, 10, 19, 10, 0, tzinfo=UTC)
    rows = []
    for week, units in enumerate(units_per_week):
        for n in range(units):  # one unit at a time, as tills record them
            rows.append((first + timedelta(weeks=week, minutes=5 * n), kind, -1))
    return rows


def test_forecast_follows_the_hand_computed_example(forecast_settings, item, store):
    ledger_at(item, store, [(datetime(2026, 10, 1, tzinfo=UTC), Movement.Kind.RECEIPT, 100)])
    ledger_at(item, store, _mondays_at_ten([2, 4, 0, 2]))
    # Online fulfilments and this week's sales do not feed the offline forecast of past weeks.
    ledger_at(item, store, [(datetime(2026, 11, 9, 10, 30, tzinfo=UTC), Movement.Kind.FULFIL, -9)])
    ledger_at(item, store, [(datetime(2026, 11, 16, 10, 30, tzinfo=UTC), Movement.Kind.POS_SALE, -9)])

    result = forecast_recompute(now=NOW)

    assert result.pairs == 1 and result.forecasts == 168
    slot10 = SafetyForecast.objects.get(item=item, location=store, slot=10)
    assert slot10.value == 2  # see test_math: mean 26/15 per hour, variance 2.457, 15 minutes, 95%
    assert slot10.mean_per_hour == round(26 / 15, 6)
    assert slot10.inputs["method"] == "slot" and slot10.inputs["weeks"] == 4
    assert SafetyForecast.objects.get(item=item, location=store, slot=11).value == 0


def test_bounds_of_the_item_hold(forecast_settings, store):
    capped = ItemFactory(sku="CAPPED", safety_min=1, safety_max=1)
    ledger_at(capped, store, [(datetime(2026, 10, 1, tzinfo=UTC), Movement.Kind.RECEIPT, 100)])
    ledger_at(capped, store, _mondays_at_ten([9, 9, 1, 12]))
    forecast_recompute(now=NOW)
    values = set(SafetyForecast.objects.filter(item=capped).values_list("value", flat=True))
    assert values == {1}


def test_cold_start_uses_the_item_rate_then_the_default(forecast_settings, store):
    new = ItemFactory(sku="NEW")
    # Stocked three days ago, 72 units sold since: 1 per hour, Poisson spread; 0.25 in the window -> 2.
    ledger_at(new, store, [(NOW - timedelta(days=3), Movement.Kind.RECEIPT, 200)])
    ledger_at(
        new,
        store,
        [(NOW - timedelta(days=3) + timedelta(hours=h, minutes=30), Movement.Kind.POS_SALE, -1) for h in range(72)],
    )
    unknown = ItemFactory(sku="NEVER-SOLD", safety_min=3)
    stock(unknown, store, 5)

    result = forecast_recompute(now=NOW)

    assert result.methods == {"item_rate": 168, "default": 168}
    assert set(SafetyForecast.objects.filter(item=new).values_list("value", flat=True)) == {2}
    assert set(SafetyForecast.objects.filter(item=unknown).values_list("value", flat=True)) == {3}


def test_a_suppliers_stock_falling_in_its_feeds_is_forecast_over_its_max_age(forecast_settings, item, store):
    supplier = make_supplier("SUP", max_age_minutes=120)
    at_supplier = supplier.location
    ledger_at(item, at_supplier, [(datetime(2026, 10, 1, tzinfo=UTC), Movement.Kind.SUPPLIER_FEED, 100)], reference="x")
    # Its feeds fall as the store's tills do in the hand-computed example: 2, 4, 0, 2 on Mondays 10:xx.
    ledger_at(
        item,
        at_supplier,
        _mondays_at_ten([2, 4, 0, 2], kind=Movement.Kind.SUPPLIER_FEED),
        reference=feed_run_reference(7),
    )
    # Staff zeroing a suspect mapping is not the supplier selling.
    ledger_at(
        item,
        at_supplier,
        [(datetime(2026, 11, 9, 10, 40, tzinfo=UTC), Movement.Kind.SUPPLIER_FEED, -50)],
        reference="supplier:SUP:mapping suspect",
    )
    ledger_at(item, store, [(datetime(2026, 10, 1, tzinfo=UTC), Movement.Kind.RECEIPT, 100)])
    ledger_at(item, store, _mondays_at_ten([2, 4, 0, 2]))

    forecast_recompute(now=NOW)

    at_store = SafetyForecast.objects.get(item=item, location=store, slot=10)
    slot10 = SafetyForecast.objects.get(item=item, location=at_supplier, slot=10)
    assert slot10.mean_per_hour == at_store.mean_per_hour == round(26 / 15, 6)
    assert slot10.std_per_hour == at_store.std_per_hour
    # The same demand covered for the feed's two hours of max age, not the stores' 15 minutes.
    assert slot10.inputs["window_seconds"] == 7200 and at_store.inputs["window_seconds"] == 900
    assert slot10.value == safety_level(
        mean_per_hour=26 / 15, var_per_hour=slot10.std_per_hour**2, window_hours=2, service_level=0.95
    )
    assert slot10.value > at_store.value == 2


def test_unowned_supplier_locations_are_not_forecast_and_stale_forecasts_go(forecast_settings, item, store):
    supplier = LocationFactory(code="SUP", kind=Location.Kind.SUPPLIER)  # no supplier, no feed
    stock(item, supplier, 50)
    stock(item, store, 5)
    forecast_recompute(now=NOW)
    assert not SafetyForecast.objects.filter(location=supplier).exists()
    assert SafetyForecast.objects.filter(location=store).count() == 168

    item.is_active = False
    item.save()
    forecast_recompute(now=NOW + timedelta(hours=1))
    assert not SafetyForecast.objects.exists()


def test_progress_is_reported(forecast_settings, store):
    for n in range(3):
        stock(ItemFactory(sku=f"P{n}"), store, 1)
    seen = []
    forecast_recompute(now=NOW, progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)
