"""Cells a spreadsheet never runs as a formula: every CSV and XLSX Stockroom writes goes through here.

A text value starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is what
Excel, LibreOffice and Google Sheets take for a formula (``=HYPERLINK(...)``,
``=cmd|' /C calc'!A0``). In CSV such a value is written with a leading ``'`` (the spreadsheets'
own mark for "this is text"), and ``csv_text_read`` takes that one ``'`` off again, so an export
read back by an import keeps the value exactly. A value that already starts with ``'`` before
one of those characters gets one more ``'``, so the round trip is exact for it too. In XLSX the
value is a string cell (data type ``s``), never a formula, and needs no mark.

Only text is marked: numbers (``int``, ``Decimal``, ``float``) are written as numbers, so a
negative quantity stays a number in its column.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A value the reader would strip a quote from: one or more quotes, then a formula character.
_MARKED = re.compile(r"'+[=+\-@\t\r]")


def needs_mark(value: str) -> bool:
    return value.startswith(FORMULA_STARTS) or _MARKED.match(value) is not None


def csv_cell(value: Any) -> Any:
    """A value as its CSV cell: text a spreadsheet would run gets a leading ``'``; numbers stay numbers."""
    if isinstance(value, str) and needs_mark(value):
        return "'" + value
    return value


def csv_text_read(text: str) -> str:
    """A CSV cell as its value: the one ``'`` that ``csv_cell`` added is taken off, nothing else."""
    return text[1:] if _MARKED.match(text) else text


class SafeCsvWriter:
    """``csv.writer`` whose every text cell is formula-safe (``csv_cell``)."""

    def __init__(self, target: Any, **options: Any) -> None:
        self._writer = csv.writer(target, **options)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([csv_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(target: Any, **options: Any) -> SafeCsvWriter:
    """The writer for every CSV Stockroom writes (options as for ``csv.writer``)."""
    return SafeCsvWriter(target, **options)


def xlsx_row(sheet: Any, values: Iterable[Any]) -> list[Any]:
    """A row for a write-only openpyxl sheet (``sheet.append``): text is a string cell, never a formula."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    cells = []
    for value in values:
        if isinstance(value, str):
            # Control characters XML cannot hold would fail the whole file; they become "\ufffd".
            value = ILLEGAL_CHARACTERS_RE.sub("\N{REPLACEMENT CHARACTER}", value)
        cell = WriteOnlyCell(sheet, value=value)
        if isinstance(value, str):
            cell.data_type = "s"  # openpyxl makes a formula of any text starting with "="
        cells.append(cell)
    return cells


def xlsx_workbook(sheets: Iterable[tuple[str, Iterable[Iterable[Any]]]]) -> Any:
    """A write-only workbook with one sheet per (title, rows); every text cell a string cell."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    for title, rows in sheets:
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(xlsx_row(sheet, row))
    return workbook
