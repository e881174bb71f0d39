"""Catalog import and export: files in, services write, nothing half-imported, a round trip changes nothing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.catalog.catalog_io.files import read_catalog
from apps.catalog.catalog_io.run import catalog_import
from apps.catalog.models import Item, Location, Movement, Product, ProductComponent, StockLevel
from apps.catalog.tests.factories import stock
from apps.channels.models import Channel, Listing, SyncWork
from apps.channels.tests.factories import channel_selling, listing, shop

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog():
    world = shop()
    web = channel_selling("web", [world.warehouse])
    listing(web, world.single, "W-HOOD", buffer=2)
    listing(web, world.kit, "W-KIT", coefficient=Decimal("0.5"))
    listing(web, world.pack, "W-PACK", max_qty=4)
    listing(web, world.cap_only, "W-CAP", is_active=False)
    SyncWork.objects.all().delete()
    return world


def snapshot() -> dict[str, list[tuple]]:
    """Every row of every table an import may touch, with every column."""
    models = (Item, Location, Product, ProductComponent, Listing, StockLevel, Movement, SyncWork, Channel)
    return {m.__name__: sorted(m.objects.order_by("pk").values_list(), key=repr) for m in models}


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(capsys) -> str:
    return capsys.readouterr().err


@pytest.mark.parametrize("target", ["export", "catalog.xlsx"])
def test_a_round_trip_changes_nothing_and_queues_no_sync(catalog, tmp_path, target, capsys):
    path = tmp_path / target
    call_command("export_catalog", str(path))
    capsys.readouterr()
    before = snapshot()
    call_command("import_catalog", str(path), "--no-progress")
    out = capsys.readouterr().out
    assert snapshot() == before
    assert SyncWork.objects.count() == 0
    counts = [line.split(": ", 1)[1] for line in out.splitlines() if ": " in line]
    assert (
        counts
        == ["0 new, 0 update, 2 unchanged", "0 new, 0 update, 2 unchanged"] + ["0 new, 0 update, 4 unchanged"] * 2
    )  # locations, items, products, listings


def test_export_writes_the_documented_columns(catalog, tmp_path):
    call_command("export_catalog", str(tmp_path))
    assert (tmp_path / "items.csv").read_text().splitlines()[0] == "sku,name,unit,safety_min,safety_max,is_active"
    products = (tmp_path / "products.csv").read_text()
    assert products.splitlines()[0] == "code,name,kind,components,is_active"
    assert "1 x CAP; 1 x HOOD-M" in products
    listings = (tmp_path / "listings.csv").read_text().splitlines()
    assert listings[0] == "channel,channel_sku,product,coefficient,buffer,max_qty,end_when,is_active,external_id"
    assert "web,W-KIT,KIT,0.5,,,,true," in listings


def test_a_new_catalog_is_created_through_the_services_and_its_listings_queue_a_sync(catalog, tmp_path):
    folder = tmp_path / "in"
    write(folder, "locations.csv", "code,name,kind\nS2,Second store,store\n")
    write(folder, "items.csv", "sku,name,unit,safety_min\nFLOUR,Flour,g,500\nMUG,Mug,piece,\n")
    write(
        folder,
        "products.csv",
        "code,name,kind,components\nFLOUR-1KG,Flour 1 kg,weighted,1000 x FLOUR\nMUG-2,Two mugs,multipack,2 x MUG\n"
        "MUG-CAP,Mug and cap,bundle,1 x MUG; 1 x CAP\n",
    )
    write(folder, "listings.csv", "channel,channel_sku,product,buffer\nweb,W-FLOUR,FLOUR-1KG,1\nweb,W-MUG2,MUG-2,\n")
    levels = StockLevel.objects.count()

    call_command("import_catalog", str(folder), "--no-progress")

    assert Location.objects.get(code="S2").kind == "store"
    assert Item.objects.get(sku="FLOUR").unit == "g" and Item.objects.get(sku="FLOUR").safety_min == 500
    assert sorted(Product.objects.get(code="MUG-CAP").components.values_list("item__sku", "quantity")) == [
        ("CAP", 1),
        ("MUG", 1),
    ]
    new = Listing.objects.filter(channel_sku__in=["W-FLOUR", "W-MUG2"])
    assert new.count() == 2
    assert set(SyncWork.objects.values_list("listing__channel_sku", flat=True)) == {"W-FLOUR", "W-MUG2"}
    assert StockLevel.objects.count() == levels  # stock never comes from a file


def test_changes_go_through_the_services_and_resync_what_they_reach(catalog, tmp_path):
    call_command("export_catalog", str(tmp_path))
    items = (tmp_path / "items.csv").read_text().replace("Item HOOD-M", "Hoodie M")
    (tmp_path / "items.csv").write_text(items)
    products = (tmp_path / "products.csv").read_text().replace("3 x HOOD-M", "4 x HOOD-M")
    (tmp_path / "products.csv").write_text(products)
    listings = (tmp_path / "listings.csv").read_text().replace("web,W-HOOD,HOOD-M,,2,", "web,W-HOOD,HOOD-M,,5,")
    (tmp_path / "listings.csv").write_text(listings)

    call_command("import_catalog", str(tmp_path), "--no-progress")

    assert Item.objects.get(sku="HOOD-M").name == "Hoodie M"
    assert catalog.pack.components.get().quantity == 4
    assert Listing.objects.get(channel_sku="W-HOOD").buffer == 5
    # The listing's new buffer and the pack's new make-up each queue that listing; nothing else.
    assert set(SyncWork.objects.values_list("listing__channel_sku", flat=True)) == {"W-HOOD", "W-PACK"}


def test_bad_rows_are_reported_with_their_row_numbers_and_nothing_is_imported(catalog, tmp_path, capsys):
    folder = tmp_path / "bad"
    write(
        folder, "items.csv", "sku,name,unit,safety_min\nNEW-1,New,piece,ten\nNEW-2,New,litre,1\nNEW-1,Again,piece,1\n"
    )
    write(folder, "products.csv", "code,name,kind,components\nP1,P,standard,1 x GHOST\nP2,P,bundle,2 x CAP\n")
    write(folder, "listings.csv", "channel,channel_sku,product\nnowhere,X1,HOOD-M\nweb,X2,NOPE\nweb,X3,HOOD-M\n")
    before = snapshot()

    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_catalog", str(folder), "--no-progress")

    err = problems_of(capsys)
    assert "items.csv row 2, safety_min: “ten” value must be an integer." in err
    assert "items.csv row 3, unit: Value 'litre' is not a valid choice." in err
    assert "items.csv row 4: NEW-1 is already in row 2 of this file" in err
    assert "products.csv row 2, components: unknown item(s) GHOST" in err
    assert "products.csv row 3, components: A bundle has at least two different items" in err
    assert "listings.csv row 2, channel: unknown channel" in err
    assert "listings.csv row 3, product: unknown product" in err
    assert "row 4" not in err.split("listings.csv")[-1]  # the good listing row has no problem
    assert snapshot() == before


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("sku,name\nCAFÉ,Café\n".encode("latin-1"), "not UTF-8 text"),
        (b'sku,name\nA,"Unfinished', "is the file cut off?"),
        (b"sku,name,unit\nA,Apple,piece\nB,Ban", "row 3, : 2 cells, the header has 3 (is the file cut off?)"),
        (b"", "the file is empty"),
        (b"sku,nmae\nA,Apple\n", "unknown column(s) nmae"),
    ],
)
def test_unreadable_or_cut_off_files_are_refused(catalog, tmp_path, capsys, data, expected):
    (tmp_path / "items.csv").write_bytes(data)
    before = snapshot()
    with pytest.raises(CommandError):
        call_command("import_catalog", str(tmp_path / "items.csv"), "--no-progress")
    assert expected.replace("row 3, : ", "row 3: ") in problems_of(capsys)
    assert snapshot() == before


def test_a_cut_off_workbook_is_refused(catalog, tmp_path, capsys):
    call_command("export_catalog", str(tmp_path / "full.xlsx"))
    data = (tmp_path / "full.xlsx").read_bytes()
    (tmp_path / "cut.xlsx").write_bytes(data[: len(data) // 2])
    with pytest.raises(CommandError):
        call_command("import_catalog", str(tmp_path / "cut.xlsx"), "--no-progress")
    assert "not a readable .xlsx workbook" in problems_of(capsys)


def test_a_dry_run_reports_and_writes_nothing(catalog, tmp_path, capsys):
    write(tmp_path, "items.csv", "sku,name\nNEW,New item\nCAP,Renamed cap\n")
    before = snapshot()
    call_command("import_catalog", str(tmp_path), "--dry-run", "--no-progress")
    assert "items.csv: 1 new, 1 update, 0 unchanged" in capsys.readouterr().out
    assert snapshot() == before


def test_a_service_refusal_rolls_back_the_whole_import(catalog, tmp_path, capsys):
    stock(catalog.cap, catalog.store, -2)  # the store allows negative stock and is below zero
    write(tmp_path, "locations.csv", "code,name,kind,allow_negative\nS1,Store,store,false\nNEWLOC,New,store,false\n")
    write(tmp_path, "items.csv", "sku,name\nNEW,New item\n")
    with pytest.raises(CommandError):
        call_command("import_catalog", str(tmp_path), "--no-progress")
    assert "locations.csv row 2, allow_negative: Some items are below zero here" in problems_of(capsys)
    assert not Location.objects.filter(code="NEWLOC").exists()
    assert not Item.objects.filter(sku="NEW").exists()


def test_an_items_unit_cannot_change_once_it_exists(catalog, tmp_path, capsys):
    write(tmp_path, "items.csv", "sku,name,unit\nCAP,Cap,g\n")
    with pytest.raises(CommandError):
        call_command("import_catalog", str(tmp_path), "--no-progress")
    assert "items.csv row 2, unit: cannot change once the record exists (it is piece)" in problems_of(capsys)


def test_the_planner_reads_a_folder_as_tables_in_kind_order(catalog, tmp_path):
    call_command("export_catalog", str(tmp_path))
    plan = catalog_import(tables=read_catalog(tmp_path), dry_run=True)
    assert [kind_plan.kind.name for kind_plan in plan.kinds] == ["locations", "items", "products", "listings"]
    assert not plan.problems


def _import_queries(folder: Path, start: int, count: int) -> int:
    folder.mkdir()
    items = "".join(f"N{n},Item {n}\n" for n in range(start, start + count))
    write(folder, "items.csv", "sku,name\n" + items)
    products = "".join(f"NP{n},Product {n},standard,1 x N{n}\n" for n in range(start, start + count))
    write(folder, "products.csv", "code,name,kind,components\n" + products)
    listings = "".join(f"web,NL{n},NP{n}\n" for n in range(start, start + count))
    write(folder, "listings.csv", "channel,channel_sku,product\n" + listings)
    with CaptureQueriesContext(connection) as queries:
        call_command("import_catalog", str(folder), "--no-progress", verbosity=0)
    return len(queries)


def test_new_rows_are_written_in_bulk_so_queries_do_not_grow_with_the_file(catalog, tmp_path):
    """What keeps 10,000 items with listings under a minute (bench/catalog_import.py measures it)."""
    few = _import_queries(tmp_path / "few", 0, 10)
    many = _import_queries(tmp_path / "many", 100, 300)
    assert many == few
    assert Listing.objects.filter(channel_sku__startswith="NL").count() == 310


def test_a_new_kind_must_fit_the_make_up_the_product_keeps(catalog, tmp_path, capsys):
    write(tmp_path, "products.csv", "code,name,kind\nHOOD-3PACK,Three hoodies,bundle\n")
    with pytest.raises(CommandError):
        call_command("import_catalog", str(tmp_path), "--no-progress")
    assert "products.csv row 2, components: A bundle has at least two different items" in problems_of(capsys)


def test_empty_cells_keep_an_existing_listings_product_and_defaults(catalog, tmp_path):
    write(tmp_path, "listings.csv", "channel,channel_sku,product,buffer,is_active\nweb,W-HOOD,,,\n")
    call_command("import_catalog", str(tmp_path), "--no-progress")
    hood = Listing.objects.get(channel_sku="W-HOOD")
    assert (hood.product.code, hood.buffer, hood.is_active) == ("HOOD-M", None, True)  # buffer cleared: it may be none
    assert list(SyncWork.objects.values_list("listing__channel_sku", flat=True)) == ["W-HOOD"]
