"""The staff pages in a real browser: headless Chromium driven by Playwright against the live server.

Screenshots land in var/screenshots/ (kept by CI as artifacts).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.utils import timezone

from apps.catalog.models import Item, Location, Movement, StockLevel
from apps.catalog.tests.factories import ItemFactory, LocationFactory, stock
from apps.forecasting.models import SafetyAudit
from apps.forecasting.services.overrides import safety_current_slot_apply
from apps.forecasting.services.recompute import forecast_recompute
from apps.forecasting.tests.factories import ledger_at

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(settings.VAR_DIR) / "screenshots"


@pytest.fixture
def shop(transactional_db, django_user_model):
    """A planner, two locations, a few items, and two weeks of store sales for HOOD-M."""
    user = django_user_model.objects.create_user(username="planner", password="pw-planner-1", is_staff=True)
    # A planner for the whole business: sees every location.
    user.user_permissions.add(*Permission.objects.filter(codename__in=["change_safetyoverride", "view_all_locations"]))
    store = LocationFactory(code="S1", name="High Street", kind=Location.Kind.STORE)
    warehouse = LocationFactory(code="W1", name="Warehouse", kind=Location.Kind.WAREHOUSE)
    hood = ItemFactory(sku="HOOD-M", name="Hoodie, medium")
    now = timezone.now()
    start = now - timedelta(days=15)
    rows = [(start, Movement.Kind.RECEIPT, 400)]
    for hour in range(0, 15 * 24, 3):
        rows.append((start + timedelta(hours=hour, minutes=20), Movement.Kind.POS_SALE, -(1 + hour % 2)))
    ledger_at(hood, store, rows)
    stock(hood, warehouse, 40)
    stock(ItemFactory(sku="CAP-RED", name="Cap, red"), store, 12)
    stock(ItemFactory(sku="TEE-S", name="T-shirt, small"), store, 30)
    forecast_recompute()
    safety_current_slot_apply()
    return {"user": user, "store": store, "hood": hood}


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _log_in(page) -> None:
    page.goto("/staff/")
    assert "/staff/login/" in page.url
    page.fill("input[name=username]", "planner")
    page.fill("input[name=password]", "pw-planner-1")
    page.click("button[type=submit]")
    page.wait_for_url("**/staff/")


def test_dashboard_charts_render(page, shop):
    _log_in(page)
    page.goto("/staff/?item=HOOD-M&days=14")
    chart = page.locator("#stock-chart svg.line-chart")
    assert chart.count() == 1
    assert chart.locator("polyline.series").count() == 3
    assert page.locator("#incidents").is_visible()
    assert page.locator("#sync-lag svg.chart, #sync-lag .no-data").count() >= 1
    assert page.locator("#feed-freshness svg.chart, #feed-freshness .no-data").count() >= 1
    _shot(page, "dashboard")


def test_quantities_read_with_their_unit_and_atp_in_a_merchants_words(page, shop):
    """Coffee is counted in grams: the dashboard, its chart and the item page say so; ATP reads "Sellable now"."""
    coffee = ItemFactory(sku="COFFEE", name="Coffee beans, bulk", unit=Item.Unit.GRAM)
    ledger_at(coffee, shop["store"], [(timezone.now() - timedelta(days=2), Movement.Kind.RECEIPT, 17250)])
    _log_in(page)
    page.goto(f"/staff/?item=COFFEE&location={shop['store'].code}&days=7")
    stats = page.locator(".stats")
    assert "17,250 g" in stats.inner_text()
    assert page.locator("#sellable-now .label").inner_text() == "Sellable now"
    assert page.locator("#sellable-now .value").inner_text() == "17,250 g"
    chart = page.locator("#stock-chart svg.line-chart")
    assert chart.locator("text", has_text=re.compile("^g$")).count() == 1  # the y axis says what it counts
    assert "sellable now" in chart.inner_html() and "today's safety" not in page.content()
    _shot(page, "dashboard_units")
    page.goto("/staff/items/COFFEE/")
    assert "17,250 g" in page.locator("table").first.inner_text()


def test_filter_override_with_validation_and_history(page, shop):
    _log_in(page)
    page.click("nav >> text=Safety stock")
    page.select_option("select[name=location]", "S1")
    page.fill("input[name=q]", "hood")
    page.click("form.filters button[type=submit]")
    rows = page.locator("table.safety tbody tr[data-sku]")
    assert rows.count() == 1
    row = page.locator('tr[data-sku="HOOD-M"][data-location="S1"]')
    _shot(page, "safety-filtered")

    # A bad value comes back next to its field, and nothing changes.
    row.locator("input[name=value]").fill("-2")
    row.locator("input[name=reason]").fill("Saturday promo")
    row.locator("button[value=set]").click()
    row = page.locator('tr[data-sku="HOOD-M"][data-location="S1"]')
    error = row.locator(".field-error")
    assert error.first.inner_text() == "Safety stock cannot be negative."
    assert StockLevel.objects.get(item=shop["hood"], location=shop["store"]).safety != 9
    _shot(page, "safety-validation-error")

    until = (timezone.localtime() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    row.locator("input[name=value]").fill("9")
    row.locator("input[name=reason]").fill("Saturday promo")
    row.locator("input[name=valid_until]").fill(until)
    row.locator("button[value=set]").click()
    page.wait_for_selector(".messages li.success")
    assert "is now 9" in page.locator(".messages li.success").inner_text()
    row = page.locator('tr[data-sku="HOOD-M"][data-location="S1"]')
    assert row.locator("td.effective").inner_text().startswith("9")
    level = StockLevel.objects.get(item=shop["hood"], location=shop["store"])
    assert level.safety == 9
    assert row.locator("td.atp").inner_text() == f"{level.atp:,} pcs"
    _shot(page, "safety-saved")

    row.locator("a.history-link").click()
    page.wait_for_url("**/history/")
    assert page.locator("#effective-safety").inner_text() == "9 pcs"
    first = page.locator("table.history tbody tr").first
    text = first.inner_text()
    assert "Override set" in text and "planner" in text and "Saturday promo" in text
    assert SafetyAudit.objects.filter(who="planner").count() == 1
    assert page.locator("svg.line-chart").count() == 1
    _shot(page, "safety-history")


def test_item_page_shows_the_backtest(page, shop):
    _log_in(page)
    page.goto("/staff/items/HOOD-M/?weeks=2")
    assert page.locator("svg.line-chart").count() == 2
    assert page.locator("table.tradeoff tbody tr").count() == 5
    _shot(page, "item-backtest")
