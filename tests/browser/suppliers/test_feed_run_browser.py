"""Feed runs in a real browser: the list and a run's page read durations as words ("28 s", "1.5 min").

The runs are real ingests: the test also checks the supplier_feed rows they booked and the
quantity a channel selling the supplier's stock shows. Screenshot: var/screenshots/feed_run.png.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings

from apps.catalog.models import Movement
from apps.catalog.tests.factories import product_of
from apps.channels.selectors import listings_availability
from apps.channels.tests.factories import channel_selling, listing
from apps.suppliers.models import FeedRun
from apps.suppliers.services.ingest import feed_ingest
from apps.suppliers.tests.factories import csv_feed, make_mapping, make_supplier, now_iso

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(settings.VAR_DIR) / "screenshots"


def test_feed_runs_show_their_durations_in_words(page, transactional_db, django_user_model):
    django_user_model.objects.create_superuser(username="merchant", password="pw-merchant-1")
    supplier = make_supplier("acme")
    mapping = make_mapping(supplier, "A-1")
    web = channel_selling("web", [supplier.location])
    sold = listing(web, product_of("SOCK", {mapping.item: 1}), "WEB-SOCK")
    first = feed_ingest(supplier=supplier, raw=csv_feed([("A-1", 7, now_iso())]))
    second = feed_ingest(supplier=supplier, raw=csv_feed([("A-1", 5, now_iso()), ("A-2", 1, now_iso())]))
    FeedRun.objects.filter(pk=first.pk).update(duration=timedelta(seconds=28.104))
    FeedRun.objects.filter(pk=second.pk).update(duration=timedelta(seconds=90))

    page.goto("/admin/login/?next=/admin/suppliers/feedrun/")
    page.fill("input[name=username]", "merchant")
    page.fill("input[name=password]", "pw-merchant-1")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/suppliers/feedrun/")
    durations = page.locator("#result_list td.field-duration_shown").all_inner_texts()
    assert durations == ["1.5 min", "28 s"]  # newest first

    page.click(f"#result_list a[href$='/feedrun/{second.pk}/change/']")
    page.wait_for_url(f"**/feedrun/{second.pk}/change/")
    assert page.locator(".fieldBox.field-duration_shown .readonly").inner_text() == "1.5 min"
    body = page.locator("#content-main").inner_text()
    assert "0:01:30" not in body and "unmapped" in body  # its quarantined row is listed below
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "feed_run.png"), full_page=True)

    # What the runs booked: the supplier's level follows the feed, and the channel sells it.
    rows = Movement.objects.filter(location=supplier.location, item=mapping.item).order_by("id")
    assert [(m.kind, m.on_hand_delta) for m in rows] == [("supplier_feed", 7), ("supplier_feed", -2)]
    assert listings_availability([sold.pk])[sold.pk].available == 5
