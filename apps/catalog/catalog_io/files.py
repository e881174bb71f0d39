"""Catalog files: a folder of CSV files (items.csv, products.csv...), one CSV file, or a workbook with a sheet per kind.

Reading never raises on bad input: an unreadable file (not UTF-8, a truncated workbook, a
cut-off quote) becomes a problem of its table, a short or long row a problem of that row.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable
from pathlib import Path

from apps.catalog.catalog_io.tables import Kind, Table, cell_text, kinds_in_order
from apps.core.spreadsheets import csv_text_read, csv_writer, xlsx_row

CSV, XLSX = ".csv", ".xlsx"


class CatalogFileError(Exception):
    """The path itself is unusable (no such file, an unknown extension, no catalog file in a folder)."""


def table_from_rows(kind: str, source: str, records: Iterable[list[str]]) -> Table:
    """Header, then rows; row numbers as a spreadsheet shows them (the header is row 1). Blank rows are skipped."""
    table = Table(kind=kind, source=source, headers=[], rows=[])
    rows = iter(records)
    header = next(rows, None)
    if header is None:
        table.problems.append("the file is empty (no header row)")
        return table
    table.headers = [cell.strip().lower() for cell in header]
    while table.headers and table.headers[-1] == "":
        table.headers.pop()
    width = len(table.headers)
    for number, cells in enumerate(rows, start=2):
        if not any(cell != "" for cell in cells):
            continue
        extra = cells[width:]
        cells = cells[:width]
        row = dict(zip(table.headers, cells, strict=False))
        if any(cell != "" for cell in extra):
            table.row_problems[number] = f"{width + len(extra)} cells, the header has {width}"
        elif len(cells) < width:
            table.row_problems[number] = f"{len(cells)} cells, the header has {width} (is the file cut off?)"
        table.rows.append((number, row))
    return table


def read_csv(data: bytes, *, kind: str, source: str) -> Table:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        table = Table(kind=kind, source=source, headers=[], rows=[])
        table.problems.append(
            f"not UTF-8 text (byte {err.start} is 0x{data[err.start]:02x}); save the file as “CSV UTF-8”"
        )
        return table
    return read_csv_text(text, kind=kind, source=source)


def read_csv_text(text: str, *, kind: str, source: str) -> Table:
    if "\x00" in text:
        table = Table(kind=kind, source=source, headers=[], rows=[])
        table.problems.append("the file holds NUL bytes: it is not a CSV file")
        return table
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[list[str]] = []
    try:
        for record in reader:
            # The ' an export put before a formula-like value comes off: a round trip keeps it exactly.
            records.append([csv_text_read(cell.strip()) for cell in record])
    except csv.Error as err:
        table = table_from_rows(kind, source, records)
        table.problems.append(f"line {reader.line_num}: {err} (is the file cut off?)")
        return table
    return table_from_rows(kind, source, records)


def read_workbook(data: bytes, *, source: str, only: str | None = None) -> list[Table]:
    """One table per sheet named after a kind; other sheet names are a problem (a typo would be silently skipped)."""
    from openpyxl import load_workbook

    names = {kind.name for kind in kinds_in_order()}
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as err:
        table = Table(kind=only or "", source=source, headers=[], rows=[])
        table.problems.append(f"not a readable .xlsx workbook ({err}); is the file cut off?")
        return [table]
    tables = []
    try:
        for sheet in workbook.worksheets:
            kind = only if only and len(workbook.worksheets) == 1 else sheet.title.strip().lower()
            where = f"{source} [{sheet.title}]"
            if kind not in names:
                table = Table(kind=kind, source=where, headers=[], rows=[])
                table.problems.append(f"sheet “{sheet.title}” is not one of {', '.join(sorted(names))}")
            else:
                rows = ([cell_text(value) for value in row] for row in sheet.iter_rows(values_only=True))
                table = table_from_rows(kind, where, rows)
            tables.append(table)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as err:
        table = Table(kind=only or "", source=source, headers=[], rows=[])
        table.problems.append(f"not a readable .xlsx workbook ({err}); is the file cut off?")
        tables.append(table)
    finally:
        workbook.close()
    return tables


def read_catalog(path: Path, *, kind: str | None = None) -> list[Table]:
    """The tables at ``path``: a folder of ``<kind>.csv`` / ``<kind>.xlsx`` files, one such file, or a workbook."""
    names = [k.name for k in kinds_in_order()]
    if path.is_dir():
        files = [path / f"{name}{ext}" for name in names for ext in (CSV, XLSX) if (path / f"{name}{ext}").is_file()]
        if not files:
            raise CatalogFileError(f"{path} holds none of {', '.join(f'{n}.csv' for n in names)}")
        return [table for file in files for table in read_catalog(file)]
    if not path.is_file():
        raise CatalogFileError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix == XLSX:
        return read_workbook(path.read_bytes(), source=path.name, only=kind)
    if suffix == CSV:
        kind = kind or path.stem.lower()
        if kind not in names:
            raise CatalogFileError(f"{path.name}: name the file after its kind ({', '.join(names)}) or pass --kind")
        return [read_csv(path.read_bytes(), kind=kind, source=path.name)]
    raise CatalogFileError(f"{path.name}: a catalog file is .csv or .xlsx")


def write_csv(kind: Kind, rows: Iterable[list[str]], target: io.TextIOBase) -> int:
    # CRLF line ends (RFC 4180): csv quotes a field holding "\r" only when "\r" ends lines.
    writer = csv_writer(target)
    writer.writerow(kind.columns)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


def write_catalog(path: Path, kinds: list[Kind]) -> dict[str, int]:
    """Every kind to ``path``: a folder of CSV files, or (``.xlsx``) one workbook with a sheet per kind."""
    counts: dict[str, int] = {}
    if path.suffix.lower() == XLSX:
        from openpyxl import Workbook

        workbook = Workbook(write_only=True)
        for kind in kinds:
            sheet = workbook.create_sheet(kind.name)
            sheet.append(list(kind.columns))
            counts[kind.name] = 0
            for row in kind.export_rows():
                # String cells: codes such as 00123 stay as written, "=..." is text, never a formula.
                sheet.append(xlsx_row(sheet, row))
                counts[kind.name] += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        workbook.save(path)
        return counts
    if path.suffix:
        raise CatalogFileError(f"{path.name}: export to a folder (CSV files) or to a .xlsx workbook")
    path.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        with (path / f"{kind.name}{CSV}").open("w", encoding="utf-8", newline="") as target:
            counts[kind.name] = write_csv(kind, kind.export_rows(), target)  # type: ignore[arg-type]
    return counts
