"""A safety-stock override far beyond demand and stock, in the browser: the page shows the server's warning and
saves only once confirmed (the rule itself: apps/staff/tests/test_override_confirm.py)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.catalog.models import Location, StockLevel
from apps.catalog.tests.factories import ItemFactory, LocationFactory, stock
from apps.forecasting.models import SafetyForecast
from apps.staff.tests.test_override_confirm import LIST, SHOTS, editor  # noqa: F401 (a fixture)


@pytest.mark.browser
@pytest.mark.slow
def test_browser_extreme_override_shows_the_warning_then_saves_once_confirmed(
    browser,
    live_server,
    transactional_db,
    editor,  # noqa: F811 (the imported fixture)
):
    item, store = ItemFactory(sku="HOOD-M"), LocationFactory(code="S1", kind=Location.Kind.STORE)
    level = stock(item, store, 12, safety=1)
    SafetyForecast.objects.bulk_create(
        [SafetyForecast(item=item, location=store, slot=s, value=1, computed_at=timezone.now()) for s in range(168)]
    )
    context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        page.goto("/staff/login/")
        page.fill("input[name=username]", "planner")
        page.fill("input[name=password]", "pw-planner-1")
        page.click("button[type=submit]")
        page.wait_for_url("**/staff/")
        page.goto(LIST)
        row = page.locator(f"#level-{level.pk}")
        row.locator("input[name=value]").fill("500")
        row.locator("input[name=reason]").fill("Hold everything for the fair")
        row.locator("button[value=set]").click()

        row = page.locator(f"#level-{level.pk}")
        warning = row.locator(".override-warning")
        warning.wait_for()
        assert "more than 10 times" in warning.inner_text()
        assert StockLevel.objects.get(pk=level.pk).safety == 1, "nothing saved before the confirmation"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "safety_confirm.png"), full_page=True)

        warning.locator("input[name=confirm]").check()
        row.locator("button[value=set]").click()
        page.wait_for_selector(".messages li.success")
        assert "is now 500" in page.locator(".messages li.success").inner_text()
        assert StockLevel.objects.get(pk=level.pk).safety == 500
        assert page.locator(f"#level-{level.pk} .override-warning").count() == 0
    finally:
        context.close()
