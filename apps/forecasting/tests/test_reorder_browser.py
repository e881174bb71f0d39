"""The "To reorder" list in a real browser (headless Chromium, Playwright): the demo shop after its weeks of
history, a delivery on its way, the list filtered, and its CSV downloaded. Screenshot: var/screenshots/."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from apps.catalog.models import Item, Location
from apps.catalog.services.receipts import ReceiptLineSpec, receipt_create
from apps.forecasting.models import ReorderRule
from apps.forecasting.selectors import REORDER_CSV_COLUMNS, reorder_list
from sandbox.demo.history import demo_forecast_start

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(settings.VAR_DIR) / "screenshots"


@pytest.fixture
def page(browser, live_server, transactional_db, django_user_model):
    """A tab logged in to the admin as the merchant."""
    boss = django_user_model.objects.create_superuser(username="boss", password="pw-boss-123", email="b@example.com")
    client = Client()
    client.force_login(boss)
    context = browser.new_context(
        viewport={"width": 1400, "height": 900}, base_url=live_server.url, accept_downloads=True
    )
    context.set_default_timeout(15_000)
    host = live_server.url.split("//", 1)[1].split(":")[0]
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context.add_cookies([{"name": cookie.key, "value": cookie.value, "domain": host, "path": "/"}])
    tab = context.new_page()
    yield tab
    context.close()


def test_to_reorder_list_with_a_delivery_due_and_its_csv(page):
    call_command("loaddata", "demo_catalog", verbosity=0)
    demo_forecast_start(seed_history=True)
    s1 = Location.objects.get(code="S1")
    hood = Item.objects.get(sku="HOOD-M")
    receipt_create(location=s1, lines=[ReceiptLineSpec(item=hood, expected=2)], actor="test", reference="PO-77")
    # Caps at S1 come in boxes of 12, set by hand.
    cap = ReorderRule.objects.get(item__sku="CAP", location=s1)
    ReorderRule.objects.filter(pk=cap.pk).update(source="manual", reorder_point=30, order_up_to=60, pack_size=12)
    due = {(r.item.sku, r.location.code): r for r in reorder_list()}
    assert ("HOOD-M", "S1") in due and ("CAP", "S1") in due

    page.goto("/admin/")
    page.click("text=To reorder")
    page.wait_for_url("**/admin/forecasting/reordersuggestion/**")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == len(due)
    hood_row = rows.filter(has_text="HOOD-M").filter(has_text="S1")
    assert hood_row.locator("td.field-on_order_shown").inner_text() == "2"
    expected = due[("HOOD-M", "S1")]
    assert hood_row.locator("td.field-suggested_shown").inner_text() == str(expected.suggested)
    cap_row = rows.filter(has_text="CAP").filter(has_text="S1")
    assert int(cap_row.locator("td.field-suggested_shown").inner_text()) % 12 == 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "to_reorder.png"), full_page=True)

    # Filtered to one store, the download holds that store's rows, as on the page.
    page.click("#changelist-filter >> text=S1 Store Berlin Mitte")
    page.wait_for_url("**location=S1**")
    with page.expect_download() as download_info:
        page.click("#reorder-csv")
    download = download_info.value
    assert download.suggested_filename.startswith("to-reorder-") and download.suggested_filename.endswith(".csv")
    table = list(csv.reader(io.StringIO(Path(download.path()).read_text())))
    assert table[0] == list(REORDER_CSV_COLUMNS)
    assert {row[3] for row in table[1:]} == {"S1"}
    by_sku = {row[0]: dict(zip(table[0], row, strict=True)) for row in table[1:]}
    assert by_sku["HOOD-M"]["on_order"] == "2"
    assert by_sku["HOOD-M"]["suggested_quantity"] == str(expected.suggested)
    assert by_sku["CAP"]["pack_size"] == "12" and by_sku["CAP"]["source"] == "manual"
    assert len(table) - 1 == page.locator("#result_list tbody tr").count()
