"""ATP is defined once (``apps.catalog.stock.atp``) and rendered three ways: SQL, ORM and Python.

Each case below puts one level at its own location and asks every rendering, and every place that
uses one, for its ATP; they must all give the expected figure. The product rule (the minimum over
components) likewise: every rendering per location, and every caller (availability, a channel's
quantities, an order's resolution, allocation and import cap) over a channel's locations.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.catalog.locks import LEVELS_FOR_UPDATE_CTE
from apps.catalog.models import Location, Product, StockLevel
from apps.catalog.selectors import levels_with_atp, products_atp_by_location
from apps.catalog.stock.atp import (
    atp,
    atp_expression,
    atp_sql,
    atp_vectorised,
    levels_atp,
    location_sells,
    product_atp,
    product_atp_at,
    product_atp_expression,
)
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of
from apps.channels.selectors import listings_availability, products_channel_quantity
from apps.orders.services.allocation import LineRequest, lines_resolve, units_allocate
from apps.orders.services.reserve import line_atp
from apps.orders.tests.factories import channel_of, listing_of

pytestmark = pytest.mark.django_db

# (name, on_hand, reserved, safety, location active, stock valid: True / False (stale) / None (no limit), ATP)
CASES = [
    ("plain", 10, 3, 2, True, None, 5),
    ("nothing reserved", 7, 0, 0, True, None, 7),
    ("safety above on hand", 4, 0, 6, True, None, 0),
    ("reserved above on hand", 2, 5, 0, True, None, 0),
    ("negative on hand (a store past zero)", -3, 0, 0, True, None, 0),
    ("exactly used up", 5, 3, 2, True, None, 0),
    ("inactive location", 10, 0, 0, False, None, 0),
    ("inactive location, stock still valid", 10, 1, 1, False, True, 0),
    ("stale supplier stock", 10, 0, 0, True, False, 0),
    ("supplier stock still valid", 10, 2, 1, True, True, 7),
]


def _valid_until(valid: bool | None):
    if valid is None:
        return None
    return timezone.now() + (timedelta(hours=1) if valid else -timedelta(minutes=1))


@pytest.fixture
def levels() -> dict[str, StockLevel]:
    item = ItemFactory(sku="FORMS")
    made = {}
    for n, (name, on_hand, reserved, safety, active, valid, _) in enumerate(CASES):
        location = LocationFactory(
            code=f"forms{n}", is_active=active, stock_valid_until=_valid_until(valid), allow_negative=True
        )
        made[name] = StockLevel.objects.create(
            item=item, location=location, on_hand=on_hand, reserved=reserved, safety=safety, allow_negative=True
        )
    return made


def _sql_atp(level_ids: list[int]) -> dict[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT s.id, {atp_sql('s', 'loc')} FROM catalog_stocklevel s "
            "JOIN catalog_location loc ON loc.id = s.location_id WHERE s.id = ANY(%s)",
            [level_ids],
        )
        return dict(cursor.fetchall())


def _locked_atp(levels: list[StockLevel]) -> dict[int, int]:
    """The locking CTE of single-statement writers, over these levels."""
    sql = (
        "WITH wanted AS (SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::int[]) AS w(item_id, location_id, q)), "
        f"locked AS ({LEVELS_FOR_UPDATE_CTE.format(wanted='wanted')}) SELECT id, atp FROM locked"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [[lv.item_id for lv in levels], [lv.location_id for lv in levels], [1 for _ in levels]])
        return dict(cursor.fetchall())


def test_sql_orm_and_python_forms_agree_on_every_case(levels):
    ids = {name: level.pk for name, level in levels.items()}
    by_sql = _sql_atp(list(ids.values()))
    by_orm = dict(StockLevel.objects.filter(pk__in=ids.values()).annotate(a=atp_expression()).values_list("pk", "a"))
    by_selector = {lv.pk: lv.atp_now for lv in levels_with_atp().filter(pk__in=ids.values())}
    by_lock = _locked_atp(list(levels.values()))
    by_levels = levels_atp(StockLevel.objects.filter(pk__in=ids.values()))
    for name, on_hand, reserved, safety, active, valid, expected in CASES:
        level = StockLevel.objects.get(pk=ids[name])
        sells = location_sells(is_active=active, stock_valid_until=_valid_until(valid))
        found = {
            "python": atp(on_hand=on_hand, reserved=reserved, safety=safety, location_sells=sells),
            "model": level.atp,
            "levels_atp": by_levels[(level.item_id, level.location_id)],
            "sql": by_sql[level.pk],
            "orm": by_orm[level.pk],
            "selector": by_selector[level.pk],
            "lock": by_lock[level.pk],
        }
        assert found == dict.fromkeys(found, expected), name


def test_vectorised_form_agrees_with_python():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame([case[1:6] for case in CASES], columns=["on_hand", "reserved", "safety", "active", "valid"])
    sells = [location_sells(is_active=case[4], stock_valid_until=_valid_until(case[5])) for case in CASES]
    found = atp_vectorised(
        on_hand=frame.on_hand, reserved=frame.reserved, safety=frame.safety, location_sells=pd.Series(sells, dtype=int)
    )
    assert list(found) == [case[-1] for case in CASES]


@pytest.mark.parametrize(
    ("stocks", "expected"),
    [
        ({"A": (10, 0, 0), "B": (9, 0, 0)}, 3),  # min(10 // 2, 9 // 3)
        ({"A": (10, 4, 1), "B": (30, 0, 0)}, 2),  # A: (10 - 4 - 1) // 2
        ({"A": (1, 0, 0), "B": (30, 0, 0)}, 0),  # one unit of A is less than one kit
        ({"A": (10, 0, 12), "B": (30, 0, 0)}, 0),  # safety above on hand
        ({"A": (10, 0, 0)}, 0),  # B has no level at all: zero stock
    ],
)
def test_bundle_atp_is_the_min_over_components_in_every_form(stocks, expected):
    location = LocationFactory(code="kits")
    items = {sku: ItemFactory(sku=f"KIT-{sku}") for sku in ("A", "B")}
    kit = product_of("KIT2x3", {items["A"]: 2, items["B"]: 3})
    for sku, (on_hand, reserved, safety) in stocks.items():
        StockLevel.objects.create(item=items[sku], location=location, on_hand=on_hand, reserved=reserved, safety=safety)
    components = {items["A"].pk: 2, items["B"].pk: 3}
    by_orm = dict(StockLevel.objects.filter(location=location).annotate(a=atp_expression()).values_list("item_id", "a"))
    assert product_atp(components=components, item_atp=by_orm) == expected
    by_python = {lv.item_id: lv.atp for lv in StockLevel.objects.filter(location=location)}
    assert product_atp(components=components, item_atp=by_python) == expected
    assert products_atp_by_location([kit.pk], [location.pk]) == {(kit.pk, location.pk): expected}


def test_a_kit_at_an_inactive_location_has_nothing_to_promise():
    location = LocationFactory(code="closed")
    item = ItemFactory(sku="CLOSED-1")
    kit = product_of("CLOSED-KIT", {item: 1})
    level = StockLevel.objects.create(item=item, location=location, on_hand=50)
    Location.objects.filter(pk=location.pk).update(is_active=False)
    level.refresh_from_db()
    assert level.atp == 0
    assert products_atp_by_location([kit.pk], [location.pk]).get((kit.pk, location.pk), 0) == 0


# Products at several locations: (name, location active, stock valid, levels of A and B as (on_hand, reserved,
# safety) or None for no level, ATP of KIT (2 A + 3 B), ATP of ONE (1 A)). A product without components
# (NONE) has nothing to promise anywhere.
PRODUCT_CASES = [
    ("plain", True, None, (10, 1, 1), (9, 0, 0), 3, 8),
    ("short of B", True, None, (20, 0, 0), (2, 0, 0), 0, 20),
    ("no level of B", True, None, (7, 0, 0), None, 0, 7),
    ("inactive", False, None, (50, 0, 0), (50, 0, 0), 0, 0),
    ("stale supplier stock", True, False, (50, 0, 0), (50, 0, 0), 0, 0),
    ("supplier stock still valid", True, True, (6, 0, 0), (30, 3, 0), 3, 6),
    ("safety above on hand", True, None, (5, 0, 9), (30, 0, 0), 0, 0),
]


@pytest.fixture
def products_world() -> dict:
    items = {sku: ItemFactory(sku=f"PF-{sku}") for sku in ("A", "B")}
    products = {
        "KIT": product_of("PF-KIT", {items["A"]: 2, items["B"]: 3}),
        "ONE": product_of("PF-ONE", {items["A"]: 1}),
        "NONE": Product.objects.create(code="PF-NONE", name="No components"),
    }
    locations = []
    for n, (_, active, valid, a, b, _, _) in enumerate(PRODUCT_CASES):
        location = LocationFactory(code=f"pforms{n}", is_active=active, stock_valid_until=_valid_until(valid))
        locations.append(location)
        for sku, level in (("A", a), ("B", b)):
            if level is not None:
                on_hand, reserved, safety = level
                StockLevel.objects.create(
                    item=items[sku], location=location, on_hand=on_hand, reserved=reserved, safety=safety
                )
    channel = channel_of("pforms", locations)
    listings = {code: listing_of(channel, f"pf-{code.lower()}", product) for code, product in products.items()}
    return {"items": items, "products": products, "locations": locations, "channel": channel, "listings": listings}


def _expected(code: str) -> list[int]:
    column = {"KIT": 5, "ONE": 6}.get(code)
    return [case[column] if column is not None else 0 for case in PRODUCT_CASES]


def test_product_atp_forms_agree_at_every_location(products_world):
    products, locations = products_world["products"], products_world["locations"]
    by_sql = products_atp_by_location([p.pk for p in products.values()], [loc.pk for loc in locations])
    item_atp = levels_atp(StockLevel.objects.filter(item__in=products_world["items"].values()))
    for code, product in products.items():
        components = dict(product.components.values_list("item_id", "quantity"))
        for location, expected in zip(locations, _expected(code), strict=True):
            here = {item: item_atp.get((item, location.pk), 0) for item in components}
            by_orm = Product.objects.filter(pk=product.pk).annotate(a=product_atp_expression(location.pk)).get().a
            found = {
                "python": product_atp(components=components, item_atp=here),
                "python, by pair": product_atp_at(
                    components=sorted(components.items()), atp=item_atp, location_id=location.pk
                ),
                "sql": by_sql.get((product.pk, location.pk), 0),
                "orm": by_orm,
            }
            assert found == dict.fromkeys(found, expected), (code, location.code)


def test_every_caller_sums_the_product_rule_over_the_channels_locations(products_world):
    channel, listings = products_world["channel"], products_world["listings"]
    Channel = type(channel)
    Channel.objects.filter(pk=channel.pk).update(buffer=0, coefficient=1)
    channel.refresh_from_db()
    shown = listings_availability([listing.pk for listing in listings.values()])
    told = products_channel_quantity(channel, [p.pk for p in products_world["products"].values()])
    for code, listing in listings.items():
        expected = sum(_expected(code))
        resolution = lines_resolve(channel_id=channel.pk, requests=[LineRequest(listing.channel_sku, 10**6)])
        (line,) = resolution.lines
        plan = units_allocate(lines=resolution.lines, location_ids=resolution.location_ids, atp=resolution.atp)
        found = {
            "listing availability": shown[listing.pk].atp,
            "channel quantity": told[listing.product_id],
            "order import cap": line_atp(line, resolution.location_ids, resolution.atp),
            "allocation": sum(allocation.units for allocation in plan.allocations),
        }
        assert found == dict.fromkeys(found, expected), code
