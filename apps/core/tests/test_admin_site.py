"""The back office says Stockroom, opens the staff dashboard as its site, shows the merchant's work
first and the machinery under "System", and names records in words."""

from __future__ import annotations

import pytest
from django.contrib import admin

pytestmark = pytest.mark.django_db


def test_the_admin_is_stockroom_and_view_site_is_the_dashboard(admin_client):
    page = admin_client.get("/admin/")
    html = page.content.decode()
    assert "<title>Back office | Stockroom</title>" in html
    assert '<a href="/admin/">Stockroom</a>' in html
    assert '<a href="/staff/">View site</a>' in html
    assert "admin/stockroom-admin.css" in html
    assert admin.site.site_header == "Stockroom"


def test_business_first_plumbing_under_system(admin_client):
    apps = admin_client.get("/admin/").context["app_list"]
    names = [app["name"] for app in apps]
    assert names[0] == "Catalog" and names[-1] == "System"
    assert names.index("Orders") < names.index("Channels and sync") < names.index("System")
    system = {model["object_name"] for model in apps[-1]["models"]}
    assert {"IdempotencyRecord", "SyncWork", "DeadLetter", "PeriodicTask", "AccessAttempt"} <= system
    business = {model["object_name"] for app in apps[:-1] for model in app["models"]}
    assert {"Incident", "StockLevel", "Order", "Listing", "ApiToken"} <= business
    assert not business & system
    # One app's own page lists its models as before.
    channels = admin_client.get("/admin/channels/").context["app_list"]
    assert {m["object_name"] for m in channels[0]["models"]} >= {"SyncWork", "Listing"}


def test_records_are_named_in_words_not_ids():
    from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
    from apps.channels.models import ChannelLocation, Listing
    from apps.channels.tests.factories import channel_selling, listing

    store, hood = LocationFactory(code="S1"), ItemFactory(sku="HOOD-M")
    level = stock(hood, store, 4)
    channel = channel_selling("web", [store])
    sold = listing(channel, product_of("HOOD-P", {hood: 1}), "hood")
    assert str(level) == "HOOD-M at S1"
    assert str(ChannelLocation.objects.get()) == "web sells from S1 (priority 0)"
    assert str(Listing.objects.get(pk=sold.pk)) == "hood on web"
    for text in (str(level), str(ChannelLocation.objects.get()), str(sold)):
        assert "@" not in text and str(hood.pk) not in text.split()
