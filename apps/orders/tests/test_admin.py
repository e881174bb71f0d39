"""Orders in the back office: read-only records, changed only by actions that call the life-cycle services."""

from __future__ import annotations

import pytest

from apps.catalog.models import Movement, StockLevel
from apps.orders.models import Order
from apps.orders.services import LineRequest, order_confirm, order_reserve

pytestmark = pytest.mark.django_db


def reserved(shop) -> int:
    return StockLevel.objects.get(item=shop.hood, location=shop.warehouse).reserved


def test_release_hold_action_lets_reserved_stock_go_and_leaves_confirmed_orders(admin_client, shop):
    held = order_reserve(channel=shop.channel, external_id="H1", lines=[LineRequest("hood", 2)]).order
    paid = order_reserve(channel=shop.channel, external_id="H2", lines=[LineRequest("hood", 3)]).order
    order_confirm(order_id=paid.pk)
    assert reserved(shop) == 5
    response = admin_client.post(
        "/admin/orders/order/", {"action": "release_hold", "_selected_action": [held.pk, paid.pk]}, follow=True
    )
    assert "Released 1 hold(s)." in response.content.decode()
    assert Order.objects.get(pk=held.pk).status == Order.Status.EXPIRED
    assert Order.objects.get(pk=paid.pk).status == Order.Status.CONFIRMED
    assert reserved(shop) == 3
    assert Movement.objects.filter(kind=Movement.Kind.RELEASE, actor__startswith="admin:").count() == 1


def test_cancel_action_gives_stock_back_and_says_what_it_refused(admin_client, shop):
    order = order_reserve(channel=shop.channel, external_id="C1", lines=[LineRequest("hood", 2)]).order
    response = admin_client.post(
        "/admin/orders/order/", {"action": "cancel", "_selected_action": [order.pk]}, follow=True
    )
    assert "Cancelled 1 order(s)." in response.content.decode()
    assert Order.objects.get(pk=order.pk).status == Order.Status.CANCELLED and reserved(shop) == 0


def test_an_order_cannot_be_edited_or_deleted_in_the_admin(admin_client, shop):
    order = order_reserve(channel=shop.channel, external_id="E1", lines=[LineRequest("hood", 2)]).order
    page = admin_client.get(f"/admin/orders/order/{order.pk}/change/")
    assert page.status_code == 200 and b'name="flagged"' not in page.content
    response = admin_client.post(f"/admin/orders/order/{order.pk}/change/", {"flagged": "on", "flag_reason": "x"})
    assert response.status_code == 403
    assert admin_client.post(f"/admin/orders/order/{order.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Order.objects.get(pk=order.pk).flagged is False


def test_the_admin_finds_an_order_by_channel_and_external_id(admin_client, shop):
    from apps.orders.tests.factories import channel_of, listing_of

    other = channel_of("market", [shop.warehouse])
    listing_of(other, "hood", shop.hood_product)
    ours = order_reserve(channel=shop.channel, external_id="EXT-77", lines=[LineRequest("hood", 1)]).order
    theirs = order_reserve(channel=other, external_id="EXT-77", lines=[LineRequest("hood", 1)]).order
    both = admin_client.get("/admin/orders/order/", {"q": "EXT-77"}).context["cl"].result_list
    assert {o.pk for o in both} == {ours.pk, theirs.pk}
    one = admin_client.get("/admin/orders/order/", {"q": "market EXT-77"}).context["cl"].result_list
    assert [o.pk for o in one] == [theirs.pk]
    by_filter = admin_client.get("/admin/orders/order/", {"q": "EXT-77", "channel__id__exact": other.pk})
    assert [o.pk for o in by_filter.context["cl"].result_list] == [theirs.pk]
