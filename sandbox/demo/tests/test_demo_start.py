"""`make run`'s demo before and in its first minutes: weeks of history, a forecast at start, no incident."""

from __future__ import annotations

import io
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db.models import Min, Sum
from django.utils import timezone

from apps.catalog.models import Incident, Movement, StockLevel
from apps.forecasting.models import ReorderRule, SafetyForecast
from apps.forecasting.selectors import reorder_list
from sandbox.demo.live import DELIVERY_EVERY, LiveDemo
from sandbox.demo.past_weeks import HISTORY_REFERENCE, demo_forecast_start


def _levels() -> dict[tuple[str, str], tuple[int, int]]:
    return {
        (lv.item.sku, lv.location.code): (lv.on_hand, lv.reserved)
        for lv in StockLevel.objects.select_related("item", "location")
    }


@pytest.mark.django_db
def test_the_demo_start_seeds_weeks_of_history_and_computes_the_forecast(settings, admin_client):
    settings.STOCKROOM_DEMO_MODE = True
    call_command("loaddata", "demo_catalog", verbosity=0)
    before = _levels()
    out = io.StringIO()

    call_command("demo", "--start-only", stdout=out)

    history = Movement.objects.filter(reference=HISTORY_REFERENCE)
    assert history.filter(kind=Movement.Kind.POS_SALE).count() > 500
    assert history.filter(kind=Movement.Kind.FULFIL).count() > 100
    assert history.aggregate(first=Min("created_at"))["first"] < timezone.now() - timedelta(weeks=5)
    # Balanced by its weekly deliveries: no level moved, and the ledger still sums to every level.
    assert _levels() == before
    for level in StockLevel.objects.all():
        sums = Movement.objects.filter(item=level.item, location=level.location).aggregate(
            on_hand=Sum("on_hand_delta"), reserved=Sum("reserved_delta")
        )
        assert (sums["on_hand"], sums["reserved"]) == (level.on_hand, level.reserved)

    # Every level has a forecast from its own slots' history, and the pages show numbers, not dashes.
    assert SafetyForecast.objects.count() == StockLevel.objects.count() * 168
    assert set(SafetyForecast.objects.values_list("inputs__method", flat=True)) == {"slot"}
    assert SafetyForecast.objects.filter(location__code="S1", item__sku="HOOD-M", value__gt=0).exists()
    page = admin_client.get("/staff/safety-stock/?location=S1").content.decode()
    assert '<td class="num forecast">\u2013</td>' not in page and '<td class="num forecast">' in page
    item_page = admin_client.get("/staff/items/HOOD-M/?location=S1").content.decode()
    assert "No offline sales in the replayed weeks" not in item_page

    # Reorder points follow the forecast; the stores' thin shelves are on the list to reorder.
    hood = ReorderRule.objects.get(item__sku="HOOD-M", location__code="S1")
    assert hood.demand_per_day > 0.5 and hood.reorder_point > hood.safety
    assert reorder_list().filter(location__code__in=["S1", "S2"]).exists()
    assert "recompute_safety" in out.getvalue() and "weeks of till sales" in out.getvalue()
    # The start line says what this hour's safety stock is, as the levels show it (the README quotes it).
    held = StockLevel.objects.filter(safety__gt=0)
    line = next(text for text in out.getvalue().splitlines() if text.startswith("forecast computed at start"))
    assert f"set at {StockLevel.objects.count()} levels, {held.count()} of them holding back" in line, line
    assert f"holding back {held.aggregate(units=Sum('safety'))['units'] or 0} units" in line, line
    assert 'make manage ARGS="recompute_safety"' in line

    # Once: a second start finds the history and only recomputes.
    rows = history.count()
    call_command("demo", "--start-only", stdout=io.StringIO())
    assert Movement.objects.filter(reference=HISTORY_REFERENCE).count() == rows


@pytest.mark.django_db
def test_without_demo_mode_the_forecast_is_still_computed_at_start(settings):
    settings.STOCKROOM_DEMO_MODE = False
    call_command("loaddata", "demo_catalog", verbosity=0)
    call_command("demo", "--start-only", stdout=io.StringIO())
    assert not Movement.objects.filter(reference=HISTORY_REFERENCE).exists()
    assert SafetyForecast.objects.count() == StockLevel.objects.count() * 168


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_demo_opens_no_incident_in_its_first_minutes(live_server, django_user_model, tmp_path, settings):
    """Two deliveries' worth of traffic (about four minutes at the default pace), run fast, with no worker:
    the platforms show nothing to buy, so this is the tills and the delivery app racing each other
    (tests/e2e/demo/test_demo_platforms.py runs the shoppers on Shopify and Amazon with a worker)."""
    from apps.core.services import token_create

    settings.STOCKROOM_DROP_ROOT = tmp_path / "drop"
    call_command("loaddata", "demo_catalog", verbosity=0)
    demo_forecast_start(seed_history=True)
    django_user_model.objects.create_user(username="bot", is_staff=True, is_superuser=True)
    demo = LiveDemo(
        base_url=live_server.url,
        staff_token=token_create(staff_username="bot"),
        channel_tokens={code: token_create(channel_code=code) for code in ("shop1", "market1", "deliver1")},
        var_dir=tmp_path,
        seed=5,
    )
    demo.wire()
    stop = threading.Event()
    runner = threading.Thread(target=demo.run, args=(stop,), kwargs={"pace_s": 0.01})
    try:
        runner.start()
        deadline = time.monotonic() + 240
        while demo.turn < 2 * DELIVERY_EVERY + 10 and time.monotonic() < deadline and runner.is_alive():
            time.sleep(0.2)
    finally:
        stop.set()
        runner.join(30)
        demo.stop()

    assert demo.turn >= 2 * DELIVERY_EVERY, "the demo ran its first minutes"
    assert Movement.objects.filter(kind=Movement.Kind.POS_SALE).exclude(reference=HISTORY_REFERENCE).exists()
    restocked = Movement.objects.filter(kind=Movement.Kind.RECEIPT, reference__startswith="receipt:demo-restock")
    assert set(restocked.values_list("location__code", flat=True)) <= {"S1", "S2"} and restocked.exists()
    assert list(Incident.objects.values_list("kind", "detail")) == []
    assert demo.incidents == 0


@pytest.mark.django_db
def test_the_safety_stock_held_back_follows_the_hour_of_the_week(settings):
    """Busy shop hours hold stock back at the stores; the night before a Monday holds less (the README says so)."""
    settings.STOCKROOM_DEMO_MODE = True
    call_command("loaddata", "demo_catalog", verbosity=0)
    saturday_noon = timezone.make_aware(timezone.datetime(2026, 12, 5, 12, 30))
    busy = demo_forecast_start(seed_history=True, now=saturday_noon)
    night = demo_forecast_start(seed_history=False, now=saturday_noon + timedelta(hours=15))
    assert busy.safety_levels == StockLevel.objects.count()
    assert busy.safety_units > night.safety_units
    assert busy.safety_holding >= 1 and night.safety_changed >= 1
