"""An incident's page links to what it is about and resolves with one button."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.catalog.models import Incident
from apps.catalog.services.incidents import incident_open
from apps.catalog.tests.factories import ItemFactory, LocationFactory
from apps.orders.services import LineRequest, order_reserve
from apps.orders.tests.factories import channel_of, listing_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def oversold(admin_client):
    from apps.catalog.tests.factories import product_of, stock

    store, hood = LocationFactory(code="S1"), ItemFactory(sku="HOOD-M")
    stock(hood, store, 3)
    channel = channel_of("web", [store])
    listing_of(channel, "hood", product_of("HOOD-P", {hood: 1}))
    order = order_reserve(channel=channel, external_id="W-1", lines=[LineRequest("hood", 1)]).order
    incident = incident_open(
        kind=Incident.Kind.OVERSELL, item_id=hood.pk, location_id=store.pk, shortfall=2, reference=f"order:{order.pk}"
    )
    return incident, order, hood, store


def test_the_queue_and_the_page_link_to_the_order_item_and_location(admin_client, oversold):
    incident, order, hood, store = oversold
    links = [
        reverse("admin:orders_order_change", args=[order.pk]),
        reverse("admin:catalog_item_change", args=[hood.pk]),
        reverse("admin:catalog_location_change", args=[store.pk]),
    ]
    queue = admin_client.get(reverse("admin:catalog_incident_changelist")).content.decode()
    page = admin_client.get(reverse("admin:catalog_incident_change", args=[incident.pk])).content.decode()
    for url in links:
        assert f'href="{url}"' in queue and f'href="{url}"' in page
    for url in links:  # each link opens
        assert admin_client.get(url).status_code == 200


def test_a_refused_import_links_to_the_orders_of_its_channel(admin_client):
    incident = incident_open(kind=Incident.Kind.IMPLAUSIBLE_IMPORT, reference="channel:market:M-9")
    page = admin_client.get(reverse("admin:catalog_incident_change", args=[incident.pk])).content.decode()
    assert reverse("admin:orders_order_changelist") + "?q=market+M-9" in page


def test_resolve_button_resolves_through_the_service_even_without_a_note(admin_client, admin_user, oversold):
    incident = oversold[0]
    url = reverse("admin:catalog_incident_change", args=[incident.pk])
    assert 'name="_resolve"' in admin_client.get(url).content.decode()
    response = admin_client.post(url, {"resolution_note": "", "_resolve": "Resolve"}, follow=True)
    assert "resolved." in response.content.decode()
    incident.refresh_from_db()
    assert incident.status == Incident.Status.RESOLVED and incident.resolved_by == admin_user.username
    assert 'name="_resolve"' not in admin_client.get(url).content.decode()  # nothing left to resolve
    # Saving without the button and without a note leaves an open incident open.
    other = incident_open(kind=Incident.Kind.LEDGER_DRIFT, reference="drift:X@Y")
    admin_client.post(reverse("admin:catalog_incident_change", args=[other.pk]), {"resolution_note": ""})
    other.refresh_from_db()
    assert other.status == Incident.Status.OPEN
