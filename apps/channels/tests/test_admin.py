"""The back office's writes to channels and listings go through the channels' services: each queues its push."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.catalog.signals import Tier
from apps.channels.models import Channel, ChannelLocation, Listing, SyncWork
from apps.channels.tests.conftest import first_sync, wait_for
from apps.channels.tests.factories import channel_selling, listing, shop
from apps.core.testing import admin_form


@pytest.fixture
def merchant(client, django_user_model):
    user = django_user_model.objects.create_superuser(username="boss", password="pw-boss-123", email="b@example.com")
    client.force_login(user)
    return client


@pytest.fixture
def s(db):
    return shop(hoodies=30, caps=10)


def queued() -> dict[int, tuple[int, str]]:
    return {work.listing_id: (work.priority, work.reason) for work in SyncWork.objects.all()}


def post(client, url: str, changes: dict[str, str]) -> None:
    response = client.post(url, {**admin_form(client, url), **changes})
    assert response.status_code == 302, response.content.decode()[:3000]


def test_an_admin_edit_of_a_listing_coefficient_queues_its_push_at_tier_two(merchant, s):
    web = channel_selling("web", [s.warehouse])
    single, other = listing(web, s.single), listing(web, s.kit)
    post(merchant, f"/admin/channels/listing/{single.pk}/change/", {"coefficient": "0.5"})
    assert Listing.objects.get(pk=single.pk).coefficient == Decimal("0.5")
    assert queued() == {single.pk: (Tier.MANUAL, "listing_settings")}
    assert other.pk not in queued()


def test_saving_a_listing_unchanged_queues_nothing(merchant, s):
    single = listing(channel_selling("web", [s.warehouse]), s.single)
    post(merchant, f"/admin/channels/listing/{single.pk}/change/", {})
    assert queued() == {}


def test_a_listing_added_in_the_admin_is_pushed_and_one_deleted_is_gone(merchant, s):
    web = channel_selling("web", [s.warehouse])
    form = admin_form(merchant, "/admin/channels/listing/add/")
    form.update({"channel": str(web.pk), "channel_sku": "NEW-1", "product": str(s.pack.pk), "is_active": "on"})
    assert merchant.post("/admin/channels/listing/add/", form).status_code == 302
    added = Listing.objects.get(channel_sku="NEW-1")
    assert queued() == {added.pk: (Tier.MANUAL, "listing_created")}
    response = merchant.post(f"/admin/channels/listing/{added.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Listing.objects.filter(pk=added.pk).exists()


def test_a_channel_buffer_edit_queues_every_listing_of_the_channel(merchant, s):
    web = channel_selling("web", [s.warehouse])
    market = channel_selling("market", [s.warehouse])
    mine = [listing(web, s.single), listing(web, s.kit)]
    theirs = listing(market, s.single)
    post(merchant, f"/admin/channels/channel/{web.pk}/change/", {"buffer": "2"})
    assert Channel.objects.get(pk=web.pk).buffer == 2
    assert queued() == {lst.pk: (Tier.MANUAL, "channel_settings") for lst in mine}
    assert theirs.pk not in queued()


def test_channel_locations_edited_inline_go_through_the_service_in_priority_order(merchant, s):
    web = channel_selling("web", [s.warehouse])
    single = listing(web, s.single)
    url = f"/admin/channels/channel/{web.pk}/change/"
    form = admin_form(merchant, url)
    form.update({
        "channel_locations-TOTAL_FORMS": "2", "channel_locations-0-priority": "1",
        "channel_locations-1-location": str(s.store.pk), "channel_locations-1-priority": "0",
        "channel_locations-1-channel": str(web.pk),
    })  # fmt: skip
    response = merchant.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    order = list(ChannelLocation.objects.filter(channel=web).order_by("priority").values_list("location_id", flat=True))
    assert order == [s.store.pk, s.warehouse.pk]
    assert queued() == {single.pk: (Tier.MANUAL, "channel_settings")}


def test_a_channel_added_in_the_admin_sells_from_its_locations_and_can_be_deleted(merchant, s):
    form = admin_form(merchant, "/admin/channels/channel/add/")
    form.update({
        "code": "shop2", "name": "Second shop", "kind": "webshop", "rate_per_s": "5", "burst": "10",
        "batch_size": "100", "coefficient": "1", "buffer": "0", "is_active": "on",
        "channel_locations-TOTAL_FORMS": "1", "channel_locations-0-location": str(s.warehouse.pk),
        "channel_locations-0-priority": "0",
    })  # fmt: skip
    response = merchant.post("/admin/channels/channel/add/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    added = Channel.objects.get(code="shop2")
    assert list(added.channel_locations.values_list("location_id", flat=True)) == [s.warehouse.pk]
    assert merchant.post(f"/admin/channels/channel/{added.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Channel.objects.filter(code="shop2").exists()


def test_a_new_make_up_in_the_product_admin_reaches_every_listing_of_the_product(merchant, s):
    web = channel_selling("web", [s.warehouse])
    market = channel_selling("market", [s.warehouse])
    reached = [listing(web, s.pack), listing(market, s.pack)]
    untouched = listing(web, s.single)
    url = f"/admin/catalog/product/{s.pack.pk}/change/"
    post(merchant, url, {"components-0-quantity": "2"})
    assert [c.quantity for c in s.pack.components.all()] == [2]
    assert queued() == {lst.pk: (Tier.MANUAL, "components") for lst in reached}
    assert untouched.pk not in queued()


def test_renaming_a_product_in_the_admin_pushes_nothing(merchant, s):
    listing(channel_selling("web", [s.warehouse]), s.pack)
    post(merchant, f"/admin/catalog/product/{s.pack.pk}/change/", {"name": "Three hoodies"})
    assert queued() == {}


@pytest.mark.parametrize(
    ("url", "action"), [("/admin/channels/listing/", "sync_now"), ("/admin/channels/channel/", "sync_all_listings")]
)
def test_sync_now_actions_queue_a_repush_at_tier_two(merchant, s, url, action):
    web = channel_selling("web", [s.warehouse])
    single = listing(web, s.single)
    selected = single.pk if action == "sync_now" else web.pk
    response = merchant.post(url, {"action": action, "_selected_action": [selected]})
    assert response.status_code == 302
    work = SyncWork.objects.get()
    assert (work.listing_id, work.priority, work.repush) == (single.pk, Tier.MANUAL, True)


@pytest.mark.worker
@pytest.mark.slow
def test_an_admin_edit_of_a_coefficient_reaches_the_channel_within_tier_two(
    celery_worker, simulator, client, django_user_model
):
    celery_worker()
    s = shop(hoodies=40, caps=40)
    sim = simulator()
    web = channel_selling("web", [s.warehouse], push_url=sim.url, secret="s3cret")
    single = listing(web, s.single)
    first_sync(sim, [single])
    assert sim.shown(single.channel_sku) == 40
    client.force_login(django_user_model.objects.create_superuser("boss", "b@example.com", "pw-boss-123"))
    post(client, f"/admin/channels/listing/{single.pk}/change/", {"coefficient": "0.5"})
    # Tier 2 goes out after its short gathering window (0.5 s here), without waiting for the sweep.
    assert wait_for(lambda: sim.shown(single.channel_sku) == 20, timeout=10) < 5


def test_staff_set_a_watermark_from_the_future_back_with_an_audit_line(merchant, s):
    from datetime import timedelta

    from django.contrib.admin.models import LogEntry
    from django.utils import timezone

    web = channel_selling("web", [s.warehouse])
    far = timezone.now() + timedelta(days=3650)
    Channel.objects.filter(pk=web.pk).update(orders_pending_until=far, orders_imported_until=far)
    response = merchant.post(
        "/admin/channels/channel/", {"action": "watermark_set_back", "_selected_action": [web.pk]}, follow=True
    )
    assert response.status_code == 200 and "set back to now" in response.content.decode()
    web.refresh_from_db()
    assert web.orders_pending_until <= timezone.now() and web.orders_imported_until <= timezone.now()
    entry = LogEntry.objects.get(object_id=str(web.pk))
    assert "Order watermark set back" in entry.get_change_message() and entry.user.username == "boss"
