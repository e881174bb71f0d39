"""Stock counts: a sheet per location, counted quantities typed in or uploaded, a preview, then apply."""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.catalog.errors import (
    CountFileRejected,
    CountNeedsConfirmation,
    InvalidMovement,
    NegativeStockRefused,
    StockWorkRefused,
)
from apps.catalog.models import Incident, Location, Movement, StockCount, StockCountLine, StockLevel
from apps.catalog.services.counts import (
    stock_count_add_items,
    stock_count_apply,
    stock_count_cancel,
    stock_count_create,
    stock_count_preview,
    stock_count_record,
    stock_count_submit,
    stock_count_upload,
)
from apps.catalog.services.movements import stock_movement_record
from apps.catalog.services.reconcile import ledger_reconcile
from apps.catalog.signals import Tier
from apps.catalog.tests.factories import ItemFactory, LocationFactory, product_of, stock
from apps.channels.models import SyncWork
from apps.channels.selectors import listings_availability, listings_zeroed_by_incident
from apps.core.testing import run_all
from apps.orders.errors import InsufficientStock
from apps.orders.models import Order
from apps.orders.services import LineRequest, order_cancel, order_reserve
from apps.orders.tests.factories import channel_of, listing_of, stock_invariants

pytestmark = pytest.mark.django_db


def make_world():
    warehouse = LocationFactory(code="W1", kind=Location.Kind.WAREHOUSE)
    store = LocationFactory(code="S1", kind=Location.Kind.STORE)
    hood, cap, scarf = ItemFactory(sku="HOOD-M"), ItemFactory(sku="CAP-RED"), ItemFactory(sku="SCARF")
    stock(hood, warehouse, 10)
    stock(cap, warehouse, 5)
    stock(scarf, warehouse, 4)
    stock(hood, store, 3)
    web = channel_of("web", [warehouse, store])
    return {
        "warehouse": warehouse,
        "store": store,
        "hood": hood,
        "cap": cap,
        "scarf": scarf,
        "web": web,
        "hood_listing": listing_of(web, "WEB-HOOD", product_of("HOOD-P", {hood: 1})),
        "scarf_listing": listing_of(web, "WEB-SCARF", product_of("SCARF-P", {scarf: 1})),
    }


@pytest.fixture
def world():
    return make_world()


def level(item, location) -> StockLevel:
    return StockLevel.objects.get(item=item, location=location)


def shown(listing) -> int:
    return listings_availability([listing.pk])[listing.pk].available


def lines_of(count) -> dict[str, StockCountLine]:
    return {line.item.sku: line for line in count.lines.select_related("item")}


def counted(count, **by_sku: int | None) -> None:
    lines = lines_of(count)
    quantities = {lines[sku.replace("_", "-")].pk: qty for sku, qty in by_sku.items()}
    stock_count_record(count_id=count.pk, quantities=quantities, actor="counter")


def test_a_count_books_each_difference_once_through_the_ledger_and_channels_follow(world):
    warehouse = world["warehouse"]
    count = stock_count_create(location=warehouse, actor="lead")
    assert count.status == StockCount.Status.DRAFT and count.scope == "all items stocked here"
    assert [(line.item.sku, line.expected, line.reserved) for line in count.lines.select_related("item")] == [
        ("CAP-RED", 5, 0),
        ("HOOD-M", 10, 0),
        ("SCARF", 4, 0),
    ]
    counted(count, HOOD_M=7, CAP_RED=5, SCARF=6)
    assert level(world["hood"], warehouse).on_hand == 10  # counting moves nothing
    with pytest.raises(StockWorkRefused):
        stock_count_apply(count_id=count.pk, actor="lead")  # not submitted yet
    stock_count_submit(count_id=count.pk, actor="counter")
    preview = {o.line.item.sku: o for o in stock_count_preview(count=count)}
    assert {sku: (o.difference, o.on_hand_after) for sku, o in preview.items()} == {
        "CAP-RED": (0, 5),
        "HOOD-M": (-3, 7),
        "SCARF": (2, 6),
    }
    SyncWork.objects.all().delete()

    applied = stock_count_apply(count_id=count.pk, actor="lead")
    assert not applied.replayed and applied.incidents == []
    assert level(world["hood"], warehouse).on_hand == 7 and level(world["scarf"], warehouse).on_hand == 6
    rows = Movement.objects.filter(reference=f"stock_count:{count.pk}")
    assert sorted(rows.values_list("item__sku", "kind", "on_hand_delta", "actor")) == [
        ("HOOD-M", "count", -3, "lead"),
        ("SCARF", "count", 2, "lead"),
    ]  # one movement per differing line, none for the cap that matched
    count.refresh_from_db()
    assert (count.status, count.applied_by, count.counted_by) == (StockCount.Status.APPLIED, "lead", "counter")
    assert {sku: (line.difference, line.movement_id is not None) for sku, line in lines_of(count).items()} == {
        "CAP-RED": (0, False),
        "HOOD-M": (-3, True),
        "SCARF": (2, True),
    }
    # Channels follow: the listings of both moved items are queued for a push and show the counted stock.
    assert set(SyncWork.objects.values_list("listing_id", flat=True)) == {
        world["hood_listing"].pk,
        world["scarf_listing"].pk,
    }
    assert shown(world["hood_listing"]) == 7 + 3 and shown(world["scarf_listing"]) == 6
    # Applying again books nothing twice.
    again = stock_count_apply(count_id=count.pk, actor="lead")
    assert again.replayed and rows.count() == 2 and level(world["hood"], warehouse).on_hand == 7
    with pytest.raises(StockWorkRefused):
        counted(count, HOOD_M=1)
    assert ledger_reconcile().ok


def test_a_sheet_lists_what_is_stocked_there_or_a_narrower_set(world):
    warehouse = world["warehouse"]
    ItemFactory(sku="HOOD-L")  # in the catalog, never stocked at the warehouse
    retired = ItemFactory(sku="HOOD-XS", is_active=False)
    stock(retired, warehouse, 1)

    def skus(**scope) -> list[str]:
        return list(
            stock_count_create(location=warehouse, actor="lead", **scope).lines.values_list("item__sku", flat=True)
        )

    assert skus() == ["CAP-RED", "HOOD-M", "SCARF"]  # active items with a level here
    assert skus(sku_prefix="hood") == ["HOOD-M"]
    assert skus(search="scar") == ["SCARF"]
    chosen = stock_count_create(location=warehouse, actor="lead", items=[world["scarf"], ItemFactory(sku="HOOD-L")])
    assert [(line.item.sku, line.expected) for line in chosen.lines.select_related("item")] == [
        ("HOOD-L", 0),  # chosen although never stocked here: found goods can be counted in
        ("SCARF", 4),
    ]
    assert chosen.scope == "2 chosen items"
    with pytest.raises(InvalidMovement):
        skus(sku_prefix="NOPE")
    supplier = LocationFactory(code="SUP", kind=Location.Kind.SUPPLIER)
    with pytest.raises(StockWorkRefused):
        stock_count_create(location=supplier, actor="lead", items=[world["hood"]])
    assert not StockCount.objects.filter(location=supplier).exists()


def test_sales_booked_after_the_snapshot_are_kept(world):
    """The count says what was on the shelf at the snapshot; a sale booked later still happened."""
    hood, warehouse = world["hood"], world["warehouse"]
    count = stock_count_create(location=warehouse, actor="lead", items=[hood])
    counted(count, HOOD_M=9)  # one missing at the snapshot
    stock_count_submit(count_id=count.pk, actor="counter")
    stock_movement_record(
        location_code="W1", item_sku="HOOD-M", kind="pos_sale", quantity=2, idempotency_key="s", actor="till"
    )
    (outcome,) = stock_count_preview(count=count)
    assert (outcome.moved_since, outcome.difference, outcome.on_hand, outcome.on_hand_after) == (-2, -1, 8, 7)
    stock_count_apply(count_id=count.pk, actor="lead")
    assert level(hood, warehouse).on_hand == 7  # 10 - 1 missing - 2 sold
    assert ledger_reconcile().ok


def test_a_count_that_would_go_below_zero_is_refused_until_corrected(world):
    hood, warehouse = world["hood"], world["warehouse"]
    count = stock_count_create(location=warehouse, actor="lead", items=[hood])
    counted(count, HOOD_M=1)
    stock_count_submit(count_id=count.pk, actor="counter")
    stock_movement_record(
        location_code="W1", item_sku="HOOD-M", kind="pos_sale", quantity=5, idempotency_key="s", actor="till"
    )
    with pytest.raises(NegativeStockRefused) as refused:
        stock_count_apply(count_id=count.pk, actor="lead")
    assert refused.value.data["lines"][0]["on_hand_after"] == -4
    assert not Movement.objects.filter(kind="count").exists()
    counted(count, HOOD_M=6)  # the sale happened before the shelf was counted: recount after it
    stock_count_apply(count_id=count.pk, actor="lead")
    assert level(hood, warehouse).on_hand == 1


def test_counting_under_the_reservations_needs_confirmation_and_opens_an_incident(world):
    scarf, warehouse = world["scarf"], world["warehouse"]
    order_reserve(channel=world["web"], external_id="o-1", lines=[LineRequest("WEB-SCARF", 3)])
    count = stock_count_create(location=warehouse, actor="lead", items=[scarf, world["hood"]])
    assert lines_of(count)["SCARF"].reserved == 3  # the sheet shows what is promised
    counted(count, SCARF=1, HOOD_M=10)
    stock_count_submit(count_id=count.pk, actor="counter")
    (hood_line, scarf_line) = stock_count_preview(count=count)
    assert scarf_line.eats_reserved and (scarf_line.on_hand_after, scarf_line.reserved) == (1, 3)
    assert not hood_line.eats_reserved

    with pytest.raises(CountNeedsConfirmation) as refused:
        stock_count_apply(count_id=count.pk, actor="lead")
    assert refused.value.data["lines"] == [
        {"sku": "SCARF", "counted": 1, "expected": 4, "on_hand": 4, "reserved": 3, "on_hand_after": 1}
    ]
    assert level(scarf, warehouse).on_hand == 4 and not Incident.objects.exists()  # nothing booked
    assert StockCount.objects.get(pk=count.pk).status == StockCount.Status.COUNTED

    SyncWork.objects.all().delete()
    applied = stock_count_apply(count_id=count.pk, actor="lead", confirmed=[scarf_line.line.pk])
    (incident,) = applied.incidents
    assert (incident.kind, incident.item, incident.location, incident.shortfall) == (
        Incident.Kind.POS_INTO_RESERVED,
        scarf,
        warehouse,
        2,
    )
    assert incident.reference == f"movement:{applied.movements[0].pk}"
    assert level(scarf, warehouse).on_hand == 1 and level(scarf, warehouse).reserved == 3
    assert lines_of(count)["SCARF"].short_confirmed
    # As for any stock under its reservations: the channels are told at once, and 0 while it lasts.
    work = SyncWork.objects.get(listing=world["scarf_listing"])
    assert work.priority == Tier.SALE
    assert listings_zeroed_by_incident([world["scarf_listing"].pk]) == {world["scarf_listing"].pk}
    assert ledger_reconcile().ok


def test_an_order_reserved_between_preview_and_apply_is_caught_inside_the_lock(world):
    scarf, warehouse = world["scarf"], world["warehouse"]
    count = stock_count_create(location=warehouse, actor="lead", items=[scarf])
    counted(count, SCARF=2)
    stock_count_submit(count_id=count.pk, actor="counter")
    assert not any(o.eats_reserved for o in stock_count_preview(count=count))  # nothing reserved yet
    order_reserve(channel=world["web"], external_id="late", lines=[LineRequest("WEB-SCARF", 3)])
    with pytest.raises(CountNeedsConfirmation):
        stock_count_apply(count_id=count.pk, actor="lead")
    assert stock_invariants()["oversold"] == 0


def test_a_blind_count_hides_expected_until_submitted(world):
    count = stock_count_create(location=world["warehouse"], actor="lead", blind=True)
    assert count.hides_expected
    counted(count, HOOD_M=10)
    assert StockCount.objects.get(pk=count.pk).hides_expected
    assert not stock_count_submit(count_id=count.pk, actor="counter").hides_expected


def test_steps_of_a_sheet(world):
    count = stock_count_create(location=world["warehouse"], actor="lead", items=[world["hood"]])
    with pytest.raises(InvalidMovement):
        stock_count_submit(count_id=count.pk, actor="counter")  # nothing counted
    other = stock_count_create(location=world["warehouse"], actor="lead", items=[world["cap"]])
    with pytest.raises(InvalidMovement):
        stock_count_record(count_id=count.pk, quantities={other.lines.get().pk: 3}, actor="counter")
    with pytest.raises(InvalidMovement):
        counted(count, HOOD_M=-1)
    counted(count, HOOD_M=4)
    counted(count, HOOD_M=None)  # cleared: not counted
    assert lines_of(count)["HOOD-M"].counted is None
    cancelled = stock_count_cancel(count_id=count.pk, actor="lead")
    assert (cancelled.status, cancelled.cancelled_by) == (StockCount.Status.CANCELLED, "lead")
    for step in (stock_count_submit, stock_count_apply, stock_count_cancel):
        with pytest.raises(StockWorkRefused):
            step(count_id=count.pk, actor="lead")
    assert not Movement.objects.filter(kind="count").exists()


def test_counts_hold_their_rules_in_the_database(world):
    count = stock_count_create(location=world["warehouse"], actor="lead", items=[world["hood"]])
    line = count.lines.get()
    for bad in (
        lambda: StockCountLine.objects.filter(pk=line.pk).update(counted=-1),
        lambda: StockCountLine.objects.create(count=count, item=world["hood"], expected=0),
        lambda: StockCountLine.objects.filter(pk=line.pk).update(difference=3),  # booked but never counted
        lambda: StockCount.objects.filter(pk=count.pk).update(status="applied"),  # applied when?
        lambda: StockCount.objects.filter(pk=count.pk).update(status="counted"),
        lambda: StockCount.objects.filter(pk=count.pk).update(cancelled_at=timezone.now()),
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            bad()


# --- Counts from a file ----------------------------------------------------------------------------


@pytest.fixture
def sheet(world):
    count = stock_count_create(location=world["warehouse"], actor="lead")
    counted(count, CAP_RED=5)
    ItemFactory(sku="HOOD-L")  # in the catalog, not on the sheet
    return count


def upload(count, text: str | bytes) -> int:
    data = text.encode() if isinstance(text, str) else text
    return stock_count_upload(count_id=count.pk, data=data, actor="counter")


def test_a_count_file_sets_the_skus_it_names(sheet):
    recorded = upload(sheet, "\ufeffSKU , Name, Counted\r\nHOOD-M,Hoodie,7\r\n\r\n SCARF ,Scarf, 0 \r\n")
    assert recorded == 2
    assert {sku: line.counted for sku, line in lines_of(sheet).items()} == {"CAP-RED": 5, "HOOD-M": 7, "SCARF": 0}


@pytest.mark.parametrize(
    ("data", "problems"),
    [
        ("sku,counted\nHOOD-M,3\nNOPE-1,2\n", [(3, "Unknown SKU NOPE-1.")]),
        ("sku,counted\nHOOD-L,2\n", [(2, "HOOD-L is not on this count sheet.")]),
        ("sku,counted\nHOOD-M,3.5\nSCARF,abc\nCAP-RED,\n", [
            (2, "Counted “3.5” is not a whole number."),
            (3, "Counted “abc” is not a whole number."),
            (4, "Counted “” is not a whole number."),
        ]),
        ("sku,counted\nHOOD-M,-2\n", [(2, "Counted -2 is negative.")]),
        ("sku,counted\nHOOD-M,2\nSCARF,1\nHOOD-M,3\n", [(4, "HOOD-M is already on row 2.")]),
        ("sku,counted\nHOOD-M,2\nSCARF\n", [(3, "1 column where the header has 2")]),
        ('sku,counted\nHOOD-M,2\n"SCARF,1', [(3, "(unexpected end of data): is it cut short?")]),
        ("sku;counted\nHOOD-M;2\n", [(1, "must name the columns sku and counted (it has sku;counted)")]),
        ("", [(0, "The file is empty.")]),
        ("sku,counted\n", [(0, "The file names no SKU.")]),
        ("sku,counted\nHÖÖD,2\n".encode("latin-1"), [(2, "not UTF-8 text")]),
        (b"sku,counted\nHOOD-M,2\x00\n", [(0, "NUL bytes")]),
    ],
    ids=[
        "unknown-sku", "not-on-sheet", "not-whole", "negative", "duplicate", "short-row", "cut-in-a-quote",
        "no-header", "empty", "header-only", "latin-1", "binary",
    ],
)  # fmt: skip
def test_a_bad_count_file_records_nothing_and_says_which_rows(sheet, data, problems):
    with pytest.raises(CountFileRejected) as rejected:
        upload(sheet, data)
    rows = rejected.value.data["rows"]
    assert [row["row"] for row in rows] == [row for row, _ in problems]
    assert all(said in row["detail"] for row, (_, said) in zip(rows, problems, strict=True)), rows
    assert {sku: line.counted for sku, line in lines_of(sheet).items()} == {"CAP-RED": 5, "HOOD-M": None, "SCARF": None}


def test_one_bad_row_sinks_the_whole_file(sheet):
    with pytest.raises(CountFileRejected) as rejected:
        upload(sheet, "sku,counted\nHOOD-M,8\nSCARF,-1\nCAP-RED,9\n")
    assert rejected.value.detail == "Nothing was recorded: the file has 1 problem."
    assert lines_of(sheet)["HOOD-M"].counted is None and lines_of(sheet)["CAP-RED"].counted == 5


def test_a_count_file_can_add_catalog_items_not_on_the_sheet(sheet, world):
    """The opening count of items with no level here: the file names them, the sheet takes them in."""
    with pytest.raises(CountFileRejected):
        upload(sheet, "sku,counted\nHOOD-L,4\nNOPE,1\n")  # an unknown SKU still sinks the file
    assert "HOOD-L" not in lines_of(sheet)
    recorded = stock_count_upload(
        count_id=sheet.pk, data=b"sku,counted\nHOOD-L,4\nHOOD-M,9\n", actor="counter", add_missing=True
    )
    assert recorded == 2
    lines = lines_of(sheet)
    assert (lines["HOOD-L"].expected, lines["HOOD-L"].counted, lines["HOOD-M"].counted) == (0, 4, 9)
    stock_count_submit(count_id=sheet.pk, actor="counter")
    stock_count_apply(count_id=sheet.pk, actor="counter")
    assert level(lines["HOOD-L"].item, world["warehouse"]).on_hand == 4


# --- Items added to a sheet -------------------------------------------------------------------------


def test_items_not_stocked_at_the_location_are_added_to_a_sheet_and_get_their_level_when_applied(world):
    store, scarf = world["store"], world["scarf"]
    beanie = ItemFactory(sku="BEANIE")  # in the catalog, never stocked anywhere
    count = stock_count_create(location=store, actor="lead")
    assert list(lines_of(count)) == ["HOOD-M"]  # the store only stocks hoodies
    assert not StockLevel.objects.filter(item__in=[beanie, scarf], location=store).exists()

    assert stock_count_add_items(count_id=count.pk, items=[beanie, scarf, world["hood"]], actor="lead") == 2
    assert stock_count_add_items(count_id=count.pk, items=[beanie], actor="lead") == 0  # already on it
    lines = lines_of(count)
    assert {sku: (line.expected, line.reserved) for sku, line in lines.items()} == {
        "BEANIE": (0, 0),
        "HOOD-M": (3, 0),
        "SCARF": (0, 0),
    }
    count.refresh_from_db()
    assert count.scope == "all items stocked here, 2 added"
    counted(count, BEANIE=9, SCARF=2)
    stock_count_submit(count_id=count.pk, actor="counter")
    after = {o.line.item.sku: o.on_hand_after for o in stock_count_preview(count=count) if o.counted is not None}
    assert after == {"BEANIE": 9, "SCARF": 2}
    applied = stock_count_apply(count_id=count.pk, actor="lead")

    assert sorted((m.item.sku, m.on_hand_delta) for m in applied.movements) == [("BEANIE", 9), ("SCARF", 2)]
    assert (level(beanie, store).on_hand, level(scarf, store).on_hand) == (9, 2)
    assert level(world["hood"], store).on_hand == 3  # not counted: left as it is
    # The web channel sells from the store: the scarves counted there are sellable at once.
    assert shown(world["scarf_listing"]) == 6
    assert ledger_reconcile().ok
    with pytest.raises(StockWorkRefused):
        stock_count_add_items(count_id=count.pk, items=[world["cap"]], actor="lead")  # applied: final


# --- Real threads -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_order_racing_an_apply_on_the_same_sku_never_oversells(transactional_db):
    """An order reserving and a count applying on their own connections: whichever locks the level
    first, the other sees it; the ledger sums to the levels and nothing is promised that is not there."""
    world = make_world()
    outcomes: list[tuple[str, str]] = []
    lock = threading.Lock()
    for round_ in range(12):
        stock(world["scarf"], world["warehouse"], 10)
        count = stock_count_create(location=world["warehouse"], actor="lead", items=[world["scarf"]])
        counted(count, SCARF=4)  # six are gone
        stock_count_submit(count_id=count.pk, actor="counter")

        def work(n: int, count_id: int = count.pk, round_: int = round_) -> None:
            if n == 0:
                try:
                    order_reserve(
                        channel=world["web"], external_id=f"race-{round_}", lines=[LineRequest("WEB-SCARF", 5)]
                    )
                    result = "reserved"
                except InsufficientStock:
                    result = "refused"
            else:
                try:
                    stock_count_apply(count_id=count_id, actor="lead")
                    result = "applied"
                except CountNeedsConfirmation:
                    stock_count_cancel(count_id=count_id, actor="lead")
                    result = "needs confirmation"
            with lock:
                outcomes.append((str(n), result))

        assert run_all(work, 2) == []
        scarf = level(world["scarf"], world["warehouse"])
        assert scarf.reserved <= scarf.on_hand, f"round {round_}: {scarf.reserved} reserved of {scarf.on_hand}"
        assert stock_invariants()["oversold"] == 0
        # Free the reservation for the next round through the orders' own path.
        for order in Order.objects.filter(status="reserved"):
            order_cancel(order_id=order.pk)
    # Either the count went first (the order is refused) or the order did (the count needs confirmation).
    pairs = [tuple(sorted(r for _, r in outcomes[i : i + 2])) for i in range(0, len(outcomes), 2)]
    assert set(pairs) <= {("applied", "refused"), ("needs confirmation", "reserved")}
    assert not Incident.objects.exists()
    assert ledger_reconcile().ok
