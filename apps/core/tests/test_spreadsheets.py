"""The one formula-safe writer of CSV and XLSX cells: text never runs, numbers stay numbers, a round trip is exact."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from apps.core.spreadsheets import csv_cell, csv_text_read, csv_writer, xlsx_workbook

HOSTILE = ["=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://evil.example","x")']
PLAIN = ["Hoodie", "'quoted", "a=b", "", "'", "1-2"]
ALREADY_MARKED = ["'=1+1", "''+3", "'-"]


@pytest.mark.parametrize("value", HOSTILE)
def test_text_a_spreadsheet_would_run_is_written_with_a_leading_quote(value):
    out = io.StringIO()
    csv_writer(out).writerow([value])
    (cell,) = next(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert cell == "'" + value
    assert csv_text_read(cell) == value


@pytest.mark.parametrize("value", HOSTILE + PLAIN + ALREADY_MARKED)
def test_every_text_value_reads_back_exactly(value):
    out = io.StringIO()
    csv_writer(out).writerow([value])
    (cell,) = next(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert csv_text_read(cell) == value


def test_numbers_stay_numbers():
    assert [csv_cell(v) for v in (-2, Decimal("-1.5"), -0.25, 0)] == [-2, Decimal("-1.5"), -0.25, 0]
    out = io.StringIO()
    csv_writer(out, lineterminator="\n").writerow(["-2", -2])
    assert out.getvalue() == "'-2,-2\n"  # the text "-2" is marked, the number -2 is not


def test_xlsx_text_is_a_string_cell_never_a_formula_and_numbers_are_numbers():
    workbook = xlsx_workbook([("items", [["name", "on_hand"], *[[value, -2] for value in HOSTILE]])])
    out = io.BytesIO()
    workbook.save(out)
    sheet = load_workbook(io.BytesIO(out.getvalue()))["items"]
    rows = list(sheet.iter_rows(min_row=2))
    # (XML reads a carriage return back as a line feed; the cell is text either way.)
    expected = [(value.replace("\r", "\n"), "s") for value in HOSTILE]
    assert [(row[0].value, row[0].data_type) for row in rows] == expected
    assert {(row[1].value, row[1].data_type) for row in rows} == {(-2, "n")}
