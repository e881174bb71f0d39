"""The back office in a real browser (headless Chromium, Playwright): a token made once, an incident
resolved from its page. Screenshots land in var/screenshots/."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from apps.catalog.models import Incident
from apps.catalog.services.incidents import incident_open
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.core.models import ApiToken
from apps.orders.services import LineRequest, order_reserve
from apps.orders.tests.factories import channel_of, listing_of
from apps.staff.models import NotificationPreference

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(settings.VAR_DIR) / "screenshots"


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def boss(transactional_db, django_user_model):
    return django_user_model.objects.create_superuser(username="boss", password="pw-boss-123", email="b@example.com")


@pytest.fixture
def page(browser, live_server, boss):
    """A tab logged in to the admin as the merchant (the session of a test client, handed to the browser)."""
    client = Client()
    client.force_login(boss)
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(15_000)
    host = live_server.url.split("//", 1)[1].split(":")[0]
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context.add_cookies([{"name": cookie.key, "value": cookie.value, "domain": host, "path": "/"}])
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def shop(transactional_db):
    store, hood = LocationFactory(code="S1", name="High Street"), ItemFactory(sku="HOOD-M", name="Hoodie, medium")
    stock(hood, store, 3)
    channel = channel_of("web", [store])
    listing_of(channel, "hood", product_of("HOOD-P", {hood: 1}))
    return {"store": store, "hood": hood, "channel": channel}


def test_a_token_is_made_in_the_admin_and_its_key_shown_once(page, shop, live_server):
    page.goto("/admin/core/apitoken/")
    page.click(".object-tools a.addlink")
    page.select_option("select[name=channel]", label=str(shop["channel"]))
    page.fill("input[name=name]", "shop plugin")
    _shot(page, "admin-token-add")
    page.click("input[type=submit][value='Create token']")
    page.wait_for_url("**/admin/core/apitoken/add/")
    key = page.input_value("#api-token-key")
    _shot(page, "admin-token-created")
    token = ApiToken.objects.get()
    assert token.channel == shop["channel"] and token.prefix == key[:8] and len(key) > 30

    # The key works for the channel's own API...
    answer = page.request.get(f"{live_server.url}/api/v1/listings/", headers={"Authorization": f"Token {key}"})
    assert answer.status == 200 and [row["channel_sku"] for row in answer.json()["results"]] == ["hood"]
    # ...and the admin never shows it again: only its prefix.
    page.click("text=Done")
    page.wait_for_url("**/admin/core/apitoken/")
    assert key not in page.content() and f"{key[:8]}…" in page.content()
    _shot(page, "admin-token-list")
    page.goto("/admin/core/apitoken/")
    page.check(f"input[name=_selected_action][value='{token.pk}']")
    page.select_option("select[name=action]", "revoke")
    page.click("button[name=index]")
    assert "Revoked 1 token(s)." in page.locator("ul.messagelist").inner_text()
    revoked = page.request.get(f"{live_server.url}/api/v1/listings/", headers={"Authorization": f"Token {key}"})
    assert revoked.status == 401


def test_an_incident_links_to_its_order_and_resolves_with_the_button(page, shop):
    order = order_reserve(channel=shop["channel"], external_id="W-1", lines=[LineRequest("hood", 1)]).order
    incident = incident_open(
        kind=Incident.Kind.OVERSELL,
        item_id=shop["hood"].pk,
        location_id=shop["store"].pk,
        shortfall=2,
        reference=f"order:{order.pk}",
        detail="Order W-1 of web sold 2 more than stock.",
    )
    page.goto("/admin/catalog/incident/")
    _shot(page, "admin-incidents")
    page.click(f"a[href$='/admin/catalog/incident/{incident.pk}/change/']")
    page.wait_for_url(f"**/admin/catalog/incident/{incident.pk}/change/")
    page.wait_for_selector("#resolve-incident")
    assert page.locator(f"a[href$='/admin/orders/order/{order.pk}/change/']").count() == 1
    assert page.locator(f"a[href$='/admin/catalog/item/{shop['hood'].pk}/change/']").count() == 1
    assert page.locator(f"a[href$='/admin/catalog/location/{shop['store'].pk}/change/']").count() == 1
    page.fill("textarea[name=resolution_note]", "Customer refunded")
    _shot(page, "admin-incident")
    page.click("#resolve-incident")
    page.wait_for_url("**/admin/catalog/incident/")
    assert "resolved." in page.locator("ul.messagelist").inner_text()
    incident.refresh_from_db()
    assert incident.status == Incident.Status.RESOLVED and incident.resolution_note == "Customer refunded"
    assert incident.resolved_by == "boss"
    page.goto(f"/admin/orders/order/{order.pk}/change/")
    assert "W-1" in page.content()


LISTS = [
    "catalog/item", "catalog/stocklevel", "catalog/movement", "catalog/incident", "catalog/product",
    "channels/channel", "channels/listing", "channels/syncwork", "orders/order", "orders/orderline",
    "suppliers/supplier", "suppliers/feedrun", "suppliers/supplierproduct", "core/apitoken",
    "forecasting/safetyforecast",
]  # fmt: skip


@pytest.fixture
def demo(transactional_db):
    from django.core.management import call_command

    call_command("loaddata", "demo_catalog", verbosity=0)


def test_the_back_office_reads_as_stockroom_and_its_lists_fit_1400_px(page, demo):
    page.goto("/admin/")
    assert page.title() == "Back office | Stockroom"
    sections = page.locator("#content-main .module caption").all_inner_texts()
    assert sections[0].strip().lower() == "catalog" and sections[-1].strip().lower() == "system"
    assert page.get_attribute("#user-tools a[href='/staff/']", "href") == "/staff/"
    _shot(page, "admin-index")
    too_wide = {}
    for name in LISTS:
        page.goto(f"/admin/{name}/")
        overflow = page.evaluate(
            "() => { const r = document.querySelector('#changelist .results');"
            " return r ? r.scrollWidth - r.clientWidth : 0; }"
        )
        if overflow > 1:
            too_wide[name] = overflow
            _shot(page, "too-wide-" + name.replace("/", "-"))
    assert too_wide == {}, f"lists wider than a 1400 px window (px too wide): {too_wide}"
    page.goto("/admin/catalog/stocklevel/")
    _shot(page, "admin-stock-levels")
    assert "@" not in page.locator("#result_list").inner_text()
    page.goto("/admin/staff/notificationpreference/")  # straight to the user's own settings
    page.uncheck("input[name=low_stock]")
    page.click("input[name=_save]")
    assert "Your notification settings are saved." in page.locator("ul.messagelist").inner_text()
    _shot(page, "admin-notification-settings")
    assert NotificationPreference.objects.filter(user__username="boss", incidents=True, low_stock=False).exists()


def test_dashboard_chart_labels_are_never_clipped(page, demo):
    from apps.channels.tests.factories import channel_selling

    channel_selling("eu-market", [], name="European marketplace for outdoor clothing and shoes")
    page.goto("/staff/")
    charts = page.locator("svg.chart")
    assert charts.count() >= 1
    clipped = page.evaluate(
        """() => {
        // Each label's box as drawn (after rotation), against its chart's box on the page.
        const out = [];
        for (const svg of document.querySelectorAll('svg.chart')) {
          const c = svg.getBoundingClientRect();
          for (const t of svg.querySelectorAll('text')) {
            const b = t.getBoundingClientRect();
            if (b.left < c.left - 0.5 || b.right > c.right + 0.5 || b.top < c.top - 0.5 || b.bottom > c.bottom + 0.5)
              out.push(`${svg.getAttribute('aria-label')}: ${t.textContent}`);
          }
        }
        return out;
    }"""
    )
    _shot(page, "staff-dashboard")
    assert clipped == []
