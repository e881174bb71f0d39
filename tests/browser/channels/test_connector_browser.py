"""The channel page's connector section in a real browser: choose a platform, fill in its settings and
credentials, "Save and test connection". Screenshot: var/screenshots/channel_connector.png."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from apps.channels.models import Channel
from apps.channels.services.connection import channel_credentials
from apps.channels.tests.factories import ChannelFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(settings.VAR_DIR) / "screenshots"


def test_a_merchant_connects_a_channel_to_a_platform_and_tests_the_connection(
    page, transactional_db, django_user_model, scripted
):
    scripted("shopify")  # the in-test platform stands in for Shopify
    django_user_model.objects.create_superuser(username="merchant", password="pw-merchant-1")
    channel = ChannelFactory(code="web", name="Webshop", connector="stockroom", kind=Channel.Kind.WEBSHOP)

    page.goto("/admin/login/?next=/admin/")
    page.fill("input[name=username]", "merchant")
    page.fill("input[name=password]", "pw-merchant-1")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")

    page.goto(f"/admin/channels/channel/{channel.pk}/change/")
    section = page.locator("fieldset.connector-shopify")
    assert section.is_hidden()  # the push protocol needs none of it
    page.select_option("#id_connector", "shopify")
    assert section.is_visible()
    page.fill("#id_settings__shopify__shop_url", "https://hoodies.example.com")
    page.fill("#id_settings__shopify__location_id", "gid://shopify/Location/7")
    page.fill("#id_credentials__shopify__access_token", "shpat_from_the_browser")
    page.fill("#id_credentials__shopify__webhook_secret", "whsec_from_the_browser")
    page.click("#test-connection")

    message = page.locator(".messagelist .success")
    message.wait_for()
    assert "Connected to https://hoodies.example.com, location gid://shopify/Location/7." in message.inner_text()
    assert page.locator("#id_connector").input_value() == "shopify"
    token = page.locator("#id_credentials__shopify__access_token")
    assert token.input_value() == "" and token.get_attribute("placeholder") == "•••••• stored"
    assert "shpat_from_the_browser" not in page.content()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "channel_connector.png"), full_page=True)

    channel.refresh_from_db()
    assert channel.connector == "shopify" and channel.settings["shop_url"] == "https://hoodies.example.com"
    assert channel_credentials(channel) == {
        "access_token": "shpat_from_the_browser",
        "webhook_secret": "whsec_from_the_browser",
    }

    # A wrong token: saved, and the platform's refusal is shown as it is.
    page.fill("#id_credentials__shopify__access_token", "wrong")
    page.click("#test-connection")
    error = page.locator(".messagelist .error")
    error.wait_for()
    assert "401 Unauthorized: the access token was refused" in error.inner_text()


def test_the_channel_form_reads_plainly_in_a_browser(page, transactional_db, django_user_model):
    """The real Shopify section: its placeholders show, a full location GID fits its box, the numbers
    say what they do; the list shows no red cross for a healthy channel."""
    django_user_model.objects.create_superuser(username="merchant", password="pw-merchant-1")
    ChannelFactory(code="web", name="Webshop", connector="stockroom", kind=Channel.Kind.WEBSHOP)
    page.goto("/admin/login/?next=/admin/")
    page.fill("input[name=username]", "merchant")
    page.fill("input[name=password]", "pw-merchant-1")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")

    page.goto("/admin/channels/channel/add/")
    page.select_option("#id_connector", "shopify")
    shop_help = page.locator("#id_settings__shopify__shop_url_helptext").inner_text()
    assert "https://<shop>.myshopify.com" in shop_help
    assert "gid://shopify/Location/<id>" in page.locator("#id_settings__shopify__location_id_helptext").inner_text()
    box = page.locator("#id_settings__shopify__location_id")
    box.fill("gid://shopify/Location/987654321098")
    assert box.evaluate("el => el.scrollWidth <= el.clientWidth")  # the whole id shows
    assert page.locator("label[for=id_settings__shopify__shop_url]").inner_text() == "Shop URL:"
    assert page.locator("label[for=id_coefficient]").inner_text() == "Share of stock shown:"
    assert "0.8 shows 80 %" in page.locator("#id_coefficient_helptext").inner_text()
    assert "a burst" in page.locator("#id_burst_helptext").inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "channel_form_plain.png"), full_page=True)

    page.goto("/admin/channels/channel/")
    assert page.locator('#result_list img[alt="False"]').count() == 0  # no red cross
    assert page.locator("#result_list td.field-pace").inner_text() == "50/s, 20 at once"
    page.screenshot(path=str(SHOTS / "channel_list.png"), full_page=True)
