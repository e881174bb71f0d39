"""The availability formulas, DB-backed selectors against a plain reference.

The rule: docs/architecture.md, "Stock, ATP and listing quantity".
"""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.catalog.models import Location, ProductComponent, StockLevel
from apps.catalog.selectors import products_atp_by_location
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of
from apps.channels.models import Channel, ChannelLocation, Listing
from apps.channels.selectors import listing_quantity, listings_availability

pytestmark = pytest.mark.django_db

N_ITEMS, N_LOCATIONS = 3, 3


# --- the reference, written from the rule in the map and nothing else ---------------------------


def ref_item_atp(on_hand: int, reserved: int, safety: int, valid: bool) -> int:
    return max(0, on_hand - reserved - safety) if valid else 0


def ref_product_atp(levels: dict, components: dict[int, int], location: int, valid: bool) -> int:
    return min(ref_item_atp(*levels[(item, location)], valid) // qty for item, qty in components.items())


def ref_listing(atp_sum: int, buffer: int, coefficient: Decimal, max_qty: int | None, end_when: int | None) -> int:
    q = math.floor(max(0, atp_sum - buffer) * coefficient)
    if max_qty is not None:
        q = min(q, max_qty)
    if end_when is not None and q <= end_when:
        q = 0
    return q


# --- the world the examples rewrite -----------------------------------------------------------


@pytest.fixture
def world():
    locations = [LocationFactory(code=f"PL{n}", allow_negative=True) for n in range(N_LOCATIONS)]
    items = [ItemFactory(sku=f"PI{n}") for n in range(N_ITEMS)]
    product = product_of("PKIT", {item: 1 for item in items}, kind="bundle")
    StockLevel.objects.bulk_create(
        [StockLevel(item=i, location=loc, allow_negative=True) for i in items for loc in locations]
    )
    channel = Channel.objects.create(code="pch", name="p")
    for loc in locations:
        ChannelLocation.objects.create(channel=channel, location=loc)
    listing = Listing.objects.create(channel=channel, channel_sku="P-KIT", product=product)
    return {"locations": locations, "items": items, "product": product, "channel": channel, "listing": listing}


level_values = st.tuples(
    st.integers(-20, 500),  # on_hand (stores may be below zero)
    st.integers(0, 200),  # reserved
    st.integers(0, 50),  # safety
)
examples = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@examples
@given(
    levels=st.lists(level_values, min_size=N_ITEMS * N_LOCATIONS, max_size=N_ITEMS * N_LOCATIONS),
    quantities=st.lists(st.integers(1, 60), min_size=N_ITEMS, max_size=N_ITEMS),
    valid=st.lists(st.booleans(), min_size=N_LOCATIONS, max_size=N_LOCATIONS),
    buffer=st.integers(0, 30),
    coefficient=st.decimals(min_value=0, max_value=1, places=3),
    max_qty=st.none() | st.integers(0, 100),
    end_when=st.none() | st.integers(0, 10),
)
def test_listing_quantity_matches_the_reference(
    world, levels, quantities, valid, buffer, coefficient, max_qty, end_when
):
    items, locations = world["items"], world["locations"]
    table = {}
    for n, (item, loc) in enumerate((i, loc) for i in items for loc in locations):
        table[(item.pk, loc.pk)] = levels[n]
        StockLevel.objects.filter(item=item, location=loc).update(
            on_hand=levels[n][0], reserved=levels[n][1], safety=levels[n][2]
        )
    components = {}
    for item, qty in zip(items, quantities, strict=True):
        ProductComponent.objects.filter(product=world["product"], item=item).update(quantity=qty)
        components[item.pk] = qty
    past = timezone.now() - timedelta(minutes=1)
    for loc, ok in zip(locations, valid, strict=True):
        Location.objects.filter(pk=loc.pk).update(stock_valid_until=None if ok else past)
    listing = world["listing"]
    Listing.objects.filter(pk=listing.pk).update(
        buffer=buffer, coefficient=coefficient, max_qty=max_qty, end_when=end_when
    )

    per_location = {
        loc.pk: ref_product_atp(table, components, loc.pk, ok) for loc, ok in zip(locations, valid, strict=True)
    }
    assert products_atp_by_location([world["product"].pk], [loc.pk for loc in locations]) == {
        (world["product"].pk, loc): atp for loc, atp in per_location.items()
    }
    result = listings_availability([listing.pk])[listing.pk]
    assert result.atp == sum(per_location.values())
    assert result.available == ref_listing(sum(per_location.values()), buffer, coefficient, max_qty, end_when)


@settings(max_examples=200, deadline=None)
@given(
    atp=st.integers(0, 10**6),
    buffer=st.integers(0, 1000),
    coefficient=st.decimals(min_value=0, max_value=1, places=3),
    max_qty=st.none() | st.integers(0, 10**6),
    end_when=st.none() | st.integers(0, 100),
)
def test_listing_quantity_function_matches_the_reference(atp, buffer, coefficient, max_qty, end_when):
    assert listing_quantity(
        atp=atp, buffer=buffer, coefficient=coefficient, max_qty=max_qty, end_when=end_when
    ) == ref_listing(atp, buffer, coefficient, max_qty, end_when)


@examples
@given(on_hand=st.integers(-50, 50), reserved=st.integers(0, 60), safety=st.integers(0, 20))
def test_level_atp_is_never_negative_and_matches(world, on_hand, reserved, safety):
    item, loc = world["items"][0], world["locations"][0]
    StockLevel.objects.filter(item=item, location=loc).update(on_hand=on_hand, reserved=reserved, safety=safety)
    level = StockLevel.objects.get(item=item, location=loc)
    assert level.atp == ref_item_atp(on_hand, reserved, safety, True) >= 0
    assert level.offline_usable == on_hand - reserved
