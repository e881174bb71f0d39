"""A stock count in a real browser: make the sheet, count (typed in, or a CSV file), preview, apply.

Each test then checks the ledger rows the count booked and the quantity the channel (a simulator
on loopback) is sent afterwards. Screenshots land in var/screenshots/.
"""

from __future__ import annotations

import pytest

from apps.catalog.models import Incident, Location, Movement, StockCount, StockLevel
from apps.catalog.services.reconcile import ledger_reconcile
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels.services.config import listings_sync_now
from apps.channels.services.push import channel_push
from apps.channels.tests.conftest import clean_sync_redis, fast_sync, simulator
from apps.channels.tests.factories import channel_selling, listing
from apps.orders.services import LineRequest, order_reserve
from tests.browser.catalog.test_stock_work_browser import _log_in, _shot

__all__ = ["clean_sync_redis", "fast_sync", "simulator"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def shop(transactional_db, django_user_model, simulator, stockroom_knobs):
    """A warehouse with hoodies, caps and scarves, a webshop selling hoodies and scarves from it,
    and an order holding 3 of the 4 scarves."""
    stockroom_knobs(SYNC_TIER2_DELAY_S="0")  # push manual changes as soon as the test asks
    django_user_model.objects.create_superuser(username="merchant", password="pw-merchant-1")
    warehouse = LocationFactory(code="W1", name="Warehouse", kind=Location.Kind.WAREHOUSE)
    hood = ItemFactory(sku="HOOD-M", name="Hoodie, medium")
    cap = ItemFactory(sku="CAP-RED", name="Cap, red")
    scarf = ItemFactory(sku="SCARF", name="Scarf, wool")
    stock(hood, warehouse, 10)
    stock(cap, warehouse, 6)
    stock(scarf, warehouse, 4)
    sim = simulator(secret="s3cret")
    web = channel_selling("web", [warehouse], push_url=sim.url, secret="s3cret")
    listings = [
        listing(web, product_of("HOOD-P", {hood: 1}), "WEB-HOOD"),
        listing(web, product_of("SCARF-P", {scarf: 1}), "WEB-SCARF"),
    ]
    order_reserve(channel=web, external_id="web-1001", lines=[LineRequest("WEB-SCARF", 3)])
    listings_sync_now(listing_ids=[row.pk for row in listings])
    channel_push(channel_id=web.pk)
    assert (sim.shown("WEB-HOOD"), sim.shown("WEB-SCARF")) == (10, 1)
    return {"warehouse": warehouse, "hood": hood, "scarf": scarf, "sim": sim, "web": web}


def _pushed(shop, sku: str) -> int | None:
    channel_push(channel_id=shop["web"].pk)
    return shop["sim"].shown(sku)


def _on_hand(item, location) -> int:
    return StockLevel.objects.get(item=item, location=location).on_hand


def _new_count(page, shop, *, blind: bool = False, prefix: str = "") -> StockCount:
    page.goto("/admin/catalog/stockcount/add/")
    page.select_option("#id_location", label=str(shop["warehouse"]))
    if blind:
        page.check("#id_blind")
    if prefix:
        page.fill("#id_sku_prefix", prefix)
    _shot(page, "count_new")
    page.click("input[name=_save]")
    page.wait_for_url("**/sheet/")
    return StockCount.objects.latest("id")


def test_a_blind_count_typed_in_previewed_and_applied(page, shop):
    _log_in(page)
    count = _new_count(page, shop, blind=True)
    assert page.locator("#blind-note").is_visible()
    assert page.locator("#count-lines td.expected").count() == 0  # the counter does not see what to expect
    assert page.locator('tr[data-sku="SCARF"] td.reserved').inner_text() == "3"
    page.fill('tr[data-sku="HOOD-M"] input.counted', "8")
    page.fill('tr[data-sku="CAP-RED"] input.counted', "6")
    page.fill('tr[data-sku="SCARF"] input.counted', "2")
    _shot(page, "count_sheet")
    page.click("input[name=_submit]")
    page.wait_for_url(f"**/stockcount/{count.pk}/preview/")

    # The preview: expected shown again, the differences, and the line under its reservations.
    hood = page.locator('#count-preview tr[data-sku="HOOD-M"]')
    assert [hood.locator(f"td.{c}").inner_text() for c in ("expected", "counted", "difference")] == [
        "10 pcs",
        "8 pcs",
        "-2 pcs",
    ]
    assert page.locator('#count-preview tr[data-sku="CAP-RED"]').count() == 0  # as expected: nothing to book
    scarf = page.locator('#count-preview tr[data-sku="SCARF"]')
    assert scarf.locator("td.reserved").inner_text() == "3 pcs" and scarf.locator("td.after").inner_text() == "2 pcs"
    assert "less on hand than is reserved" in page.locator("#count-summary").inner_text()
    _shot(page, "count_preview")

    page.click("#apply")  # without confirming the scarf line
    page.wait_for_selector(".messagelist .error")
    assert "Confirm them to apply" in page.locator(".messagelist").inner_text()
    assert not Movement.objects.filter(reference=f"stock_count:{count.pk}").exists()
    page.check('tr[data-sku="SCARF"] input.confirm-short')
    page.click("#apply")
    page.wait_for_selector(".messagelist .success")
    assert "2 movements booked (-4 pcs); 1 incident(s) opened" in page.locator(".messagelist").inner_text()
    assert page.locator("#count-status").inner_text() == "Applied"
    # The page stays on the count as applied: every counted line, the ones as expected too, and what each booked.
    assert page.url.endswith(f"/stockcount/{count.pk}/preview/")
    assert page.locator('#count-preview tr[data-sku="CAP-RED"] td.difference').inner_text() == "as expected"
    assert page.locator('#count-preview tr[data-sku="HOOD-M"] td.difference').inner_text() == "-2 pcs"
    assert page.locator("#count-preview tbody tr").count() == 3
    _shot(page, "count_applied")
    # Its record page links to that list with a plain link, not a button that looks like it does something.
    page.goto(f"/admin/catalog/stockcount/{count.pk}/change/")
    assert "button" not in (page.locator("#open-preview").get_attribute("class") or "")
    page.click("#open-preview")
    page.wait_for_url(f"**/stockcount/{count.pk}/preview/")

    # The ledger rows of this count, from its page.
    page.click("a.ledger-link")
    page.wait_for_url("**/catalog/movement/?reference__exact=*")
    assert page.locator("#result_list tbody tr").count() == 2
    rows = Movement.objects.filter(reference=f"stock_count:{count.pk}")
    assert sorted(rows.values_list("item__sku", "kind", "on_hand_delta", "actor")) == [
        ("HOOD-M", "count", -2, "merchant"),
        ("SCARF", "count", -2, "merchant"),
    ]
    assert (_on_hand(shop["hood"], shop["warehouse"]), _on_hand(shop["scarf"], shop["warehouse"])) == (8, 2)
    assert Incident.objects.get().kind == Incident.Kind.POS_INTO_RESERVED
    # The channel hears of it: the counted hoodies, and 0 scarves while the order is not covered.
    assert _pushed(shop, "WEB-HOOD") == 8
    assert shop["sim"].shown("WEB-SCARF") == 0
    assert ledger_reconcile().ok


def test_a_count_uploaded_as_a_file(page, shop):
    _log_in(page)
    count = _new_count(page, shop, prefix="HOOD")
    assert page.locator('tr[data-sku="HOOD-M"] td.expected').inner_text() == "10"
    assert page.locator("#count-lines tbody tr").count() == 1

    bad = b"sku,counted\nHOOD-M,twelve\nSCARF,1\nHOOD-M,3\n"
    page.set_input_files("#id_file", files=[{"name": "count.csv", "mimeType": "text/csv", "buffer": bad}])
    page.click("input[name=upload]")
    page.wait_for_selector("#file-problems")
    problems = page.locator("#file-problems tbody tr")
    assert [problems.nth(n).get_attribute("data-row") for n in range(problems.count())] == ["2", "3", "4"]
    assert "SCARF is not on this count sheet." in page.locator("#file-problems").inner_text()
    _shot(page, "count_upload_problems")
    assert count.lines.get().counted is None  # nothing of a bad file is recorded

    good = "\ufeffsku,counted\r\nHOOD-M,13\r\n".encode()
    page.set_input_files("#id_file", files=[{"name": "count.csv", "mimeType": "text/csv", "buffer": good}])
    page.click("input[name=upload]")
    page.wait_for_selector(".messagelist .success")
    assert page.locator('tr[data-sku="HOOD-M"] input.counted').input_value() == "13"
    page.click("input[name=_submit]")
    page.wait_for_url("**/preview/")
    assert page.locator('#count-preview tr[data-sku="HOOD-M"] td.difference').inner_text() == "+3 pcs"
    page.click("#apply")
    page.wait_for_selector(".messagelist .success")
    assert list(
        Movement.objects.filter(reference=f"stock_count:{count.pk}").values_list("on_hand_delta", flat=True)
    ) == [3]
    assert _pushed(shop, "WEB-HOOD") == 13
    assert ledger_reconcile().ok


def test_an_item_never_stocked_at_the_location_is_added_to_the_sheet_and_counted_in(page, shop):
    """Beanies found on the warehouse shelf that the books never had there: added, counted, sold."""
    beanie = ItemFactory(sku="BEANIE", name="Beanie, grey")
    listings_sync_now(listing_ids=[listing(shop["web"], product_of("BEANIE-P", {beanie: 1}), "WEB-BEANIE").pk])
    assert _pushed(shop, "WEB-BEANIE") == 0
    _log_in(page)
    count = _new_count(page, shop, prefix="HOOD")
    assert page.locator("#count-lines tbody tr").count() == 1
    page.click("#id_add_items + .select2 .select2-selection")
    page.keyboard.type("bean")
    page.click(".select2-results__option:has-text('BEANIE')")
    _shot(page, "count_add_item")
    page.click("#add-items")
    page.wait_for_selector(".messagelist .success")
    assert "Added 1 line(s) to count: BEANIE." in page.locator(".messagelist").inner_text()
    row = page.locator('tr[data-sku="BEANIE"]')
    assert row.locator("td.expected").inner_text() == "0"
    row.locator("input.counted").fill("9")
    page.click("input[name=_submit]")
    page.wait_for_url(f"**/stockcount/{count.pk}/preview/")
    assert page.locator('#count-preview tr[data-sku="BEANIE"] td.difference').inner_text() == "+9 pcs"
    _shot(page, "count_add_item_preview")
    page.click("#apply")
    page.wait_for_selector(".messagelist .success")
    assert _on_hand(beanie, shop["warehouse"]) == 9  # the level is made by applying the count
    assert _pushed(shop, "WEB-BEANIE") == 9
    assert ledger_reconcile().ok
