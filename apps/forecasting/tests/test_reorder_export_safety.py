"""From the attacker's side: an item named like a formula is text in the "to reorder" CSV, never a formula."""

from __future__ import annotations

import csv
import io

import pytest

from apps.catalog.tests.factories import ItemFactory, stock
from apps.core.spreadsheets import csv_text_read
from apps.forecasting.models import ReorderRule
from apps.forecasting.selectors import REORDER_CSV_COLUMNS
from apps.forecasting.services.reorder import reorder_points_recompute, reorder_rule_update

pytestmark = pytest.mark.django_db


def test_the_reorder_csv_marks_formula_names_and_keeps_its_figures_numbers(admin_client, store):
    names = {"CALC": "=cmd|' /C calc'!A0", "PLUS": "+1", "MINUS": "-2", "AT": "@SUM(A1)"}
    for sku, name in names.items():
        stock(ItemFactory(sku=sku, name=name), store, 1)
    reorder_points_recompute()
    for rule in ReorderRule.objects.filter(location=store):
        points = {"source": "manual", "reorder_point": 5, "order_up_to": 9}
        reorder_rule_update(rule_id=rule.pk, fields=points, actor="t")

    response = admin_client.get("/admin/forecasting/reordersuggestion/export.csv")

    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.content.decode(), newline="")))
    assert rows[0] == list(REORDER_CSV_COLUMNS)
    by_sku = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert {sku: row["item"] for sku, row in by_sku.items()} == {sku: "'" + name for sku, name in names.items()}
    assert {sku: csv_text_read(row["item"]) for sku, row in by_sku.items()} == names
    assert [cell for row in rows for cell in row if cell.startswith(("=", "+", "-", "@", "\t", "\r"))] == []
    assert {row["suggested_quantity"] for row in by_sku.values()} == {"8"}  # figures stay plain numbers
