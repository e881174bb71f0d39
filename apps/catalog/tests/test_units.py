"""Quantities read with their unit, and sums never add different units."""

from __future__ import annotations

import pytest

from apps.catalog.models import Item, Location
from apps.catalog.services.receipts import ReceiptLineSpec, receipt_create
from apps.catalog.tests.factories import ItemFactory, LocationFactory
from apps.catalog.units import quantity_text, totals_by_unit, totals_text


def test_a_quantity_reads_in_its_base_unit_with_a_thousands_separator():
    assert quantity_text(15000, "ml") == "15,000 ml"
    assert quantity_text(17250, "g") == "17,250 g"
    assert quantity_text(66, "piece") == "66 pcs"
    assert quantity_text(1, "piece") == "1 pc"
    assert quantity_text(-2, "piece", signed=True) == "-2 pcs"
    assert quantity_text(3, "g", signed=True) == "+3 g"
    assert quantity_text(None, "g") == "\N{EN DASH}"


def test_totals_are_grouped_per_unit_in_a_fixed_order():
    totals = totals_by_unit([("g", 2000), ("piece", 12), ("g", 500), ("piece", 18), ("ml", 0)])
    assert totals == {"g": 2500, "piece": 30, "ml": 0}
    assert totals_text(totals) == "30 pcs, 2,500 g"
    assert totals_text({}) == "0"


@pytest.mark.django_db
def test_the_receipts_list_totals_each_unit_apart(admin_client):
    store = LocationFactory(code="S1", kind=Location.Kind.STORE)
    hood = ItemFactory(sku="HOOD-M")
    coffee = ItemFactory(sku="COFFEE", unit=Item.Unit.GRAM)
    lines = [ReceiptLineSpec(item=hood, expected=30), ReceiptLineSpec(item=coffee, expected=2500)]
    receipt_create(location=store, lines=lines, actor="test", reference="PO-9")
    page = admin_client.get("/admin/catalog/receipt/").content.decode()
    assert '<td class="field-due_units">30 pcs, 2,500 g</td>' in page
    assert "2530" not in page
