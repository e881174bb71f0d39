"""Turning supplier bytes (CSV, XML, JSON items) into one table of text columns, with every bad line kept.

Nothing here touches the database. The result always has the columns ``supplier_sku``,
``quantity``, ``updated_at`` (text, possibly empty) and ``row_number`` (1-based data row),
plus whatever extra columns the supplier sent; lines that cannot even be split into fields
come back as quarantined rows so that none is silently lost.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeElementTree

from apps.suppliers.limits import FeedTooLarge, feed_max_columns, feed_max_line_bytes

REQUIRED_COLUMNS = ("supplier_sku", "quantity", "updated_at")
DELIMITERS = (",", ";", "\t", "|")


_BOM = b"\xef\xbb\xbf"
_QUOTE, _LF, _CR, _SPACE = 0x22, 0x0A, 0x0D, 0x20


class FeedUnreadable(Exception):
    """The feed as a whole cannot be read: wrong format, missing columns, XML entities."""


@dataclass
class ParsedFeed:
    frame: pd.DataFrame
    # row_number, supplier_sku, raw, reason; and "named": every value of the row that may be a SKU.
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    encoding: str = "utf-8"
    delimiter: str = ","

    @property
    def rows_read(self) -> int:
        return len(self.frame) + len(self.quarantined)


def detect_encoding(raw: bytes) -> str:
    """UTF-8 (with or without a byte-order mark), else Latin-1, which can decode anything."""
    if raw.startswith(_BOM):
        return "utf-8-sig"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def detect_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _column_names(fields: Sequence[str]) -> list[str]:
    names = [str(c).strip().lower().lstrip("\ufeff") for c in fields]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise FeedUnreadable(
            f"missing column(s): {', '.join(missing)}; expected a header with {', '.join(REQUIRED_COLUMNS)}"
        )
    twice = sorted({n for n in names if n and names.count(n) > 1})
    if twice:
        # Which of two "quantity" columns is the stock? Neither is guessed.
        raise FeedUnreadable(f"column(s) given twice in the header: {', '.join(twice)}")
    return names


def _line_ends(raw: bytes, arr: np.ndarray) -> np.ndarray:
    """Positions of every line break: LF, CR, and a CR LF pair once (at its LF)."""
    if raw.find(b"\r") < 0:  # the usual file: LF only
        return np.flatnonzero(arr == _LF)
    ends = np.flatnonzero((arr == _LF) | (arr == _CR))
    if len(ends):
        follows = ends[:-1] + 1
        pair = (arr[ends[:-1]] == _CR) & (ends[1:] == follows) & (arr[np.minimum(follows, len(arr) - 1)] == _LF)
        ends = ends[np.concatenate((~pair, [True]))]
    return ends


def _longest_line(arr: np.ndarray, ends: np.ndarray) -> int:
    if not len(ends):
        return len(arr)
    return int(max(ends[0], np.diff(ends).max(initial=0) - 1, len(arr) - ends[-1] - 1))


def _fields_of(text: str, delimiter: str) -> list[str]:
    """One record's fields, the way the csv module reads them (for the header and for quarantined rows)."""
    try:
        return next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True), [])
    except csv.Error:
        return text.split(delimiter)


@dataclass
class _Records:
    """Where each record of a CSV file starts and ends, and how many fields it has (quotes respected)."""

    starts: np.ndarray  # first byte of each record
    ends: np.ndarray  # one past its last content byte (its line terminator excluded)
    fields: np.ndarray  # number of fields
    unterminated: bool  # the last record opens a quote that never closes


def _field_starts(arr: np.ndarray, positions: np.ndarray, delimiter: int) -> np.ndarray:
    """Whether each position starts a field: after a delimiter or a line break, maybe after blanks."""
    before = np.maximum(positions - 1, 0)
    # skipinitialspace: `a, "b"` opens a quoted field after the blanks; walk back over them.
    blank = (arr[before] == _SPACE) & (positions > 0)
    while blank.any():
        before[blank] -= 1
        blank &= (arr[before] == _SPACE) & (before > 0)
    previous = arr[before]
    return (positions == 0) | (previous == delimiter) | (previous == _LF) | (previous == _CR) | (previous == _SPACE)


def _scan_records(raw: bytes, delimiter: int, line_ends: np.ndarray) -> _Records | None:
    """Record boundaries and field counts, vectorised; None when the quoting needs the exact reader.

    With quotes, a line break or delimiter is inside a quoted field when an odd number of
    quotes precede it, and the quotes that open a field are those with an even number
    before them. That matches the pandas tokenizer as long as every opening quote stands at
    the start of a field (it takes a quote inside a field, ``12" pizza``, as a character);
    otherwise the exact reader is used.
    """
    arr = np.frombuffer(raw, dtype=np.uint8)
    n = len(arr)
    ends = line_ends
    delimiters = np.flatnonzero(arr == delimiter)
    quotes = np.flatnonzero(arr == _QUOTE)
    if len(quotes):
        opening = quotes[::2]
        # An opening quote right after a closing one is the second half of an escaped "".
        closing_before = np.concatenate(([-2], quotes[1::2]))[: len(opening)]
        escaped = closing_before == opening - 1
        if not (_field_starts(arr, opening, delimiter) | escaped).all():
            return None
        ends = ends[(np.searchsorted(quotes, ends) & 1) == 0]
        delimiters = delimiters[(np.searchsorted(quotes, delimiters) & 1) == 0]
    starts = np.concatenate(([0], ends + 1))
    stops = np.concatenate((ends, [n]))
    if starts[-1] >= n and len(starts) > 1:  # the file ends with a line break: no record after it
        starts, stops = starts[:-1], stops[:-1]
    counts = np.diff(np.searchsorted(delimiters, np.concatenate((starts, [n]))))
    # A record ending in CR before its LF: the CR belongs to the line break.
    stops = stops - ((stops > starts) & (arr[np.maximum(stops - 1, 0)] == _CR))
    return _Records(starts=starts, ends=stops, fields=counts + 1, unterminated=len(quotes) % 2 == 1)


def _quarantined_row(row_number: int, text: str, reason: str, *, delimiter: str, sku_at: int) -> dict[str, Any]:
    fields = _fields_of(text, delimiter)
    sku = fields[sku_at].strip() if sku_at < len(fields) else ""
    return {"row_number": row_number, "supplier_sku": sku[:200], "raw": text[:2000], "reason": reason, "named": fields}


def read_csv(raw: bytes) -> ParsedFeed:
    """Every data record becomes one row of the frame or one quarantined row; a row of the wrong width shifts nothing.

    ``row_number`` is the data record's number (the header is row 0, blank lines are counted
    but are not rows). Fast path: record boundaries and field counts are found with numpy,
    and pandas' C reader reads only the records of the right width. Files whose quoting the
    vectorised scan cannot follow exactly go through the csv module instead (slower, exact).
    """
    empty = ParsedFeed(frame=pd.DataFrame(columns=[*REQUIRED_COLUMNS, "row_number"]))
    if not raw.strip():
        return empty
    encoding = detect_encoding(raw)
    if encoding == "utf-8-sig":
        raw, encoding = raw[len(_BOM) :], "utf-8"
    arr = np.frombuffer(raw, dtype=np.uint8)
    line_ends = _line_ends(raw, arr)
    longest = _longest_line(arr, line_ends)
    if longest > feed_max_line_bytes():
        raise FeedTooLarge(
            f"a line of {longest} bytes is over the {feed_max_line_bytes()}-byte limit (FEED_MAX_LINE_BYTES)"
        )
    first_end = min((p for p in (raw.find(b"\n"), raw.find(b"\r")) if p >= 0), default=len(raw))
    first_line = raw[:first_end].decode(encoding, errors="replace")
    delimiter = detect_delimiter(first_line)
    header_fields = _fields_of(first_line, delimiter)
    if len(header_fields) > feed_max_columns():
        raise FeedTooLarge(
            f"the header has {len(header_fields)} columns, "
            f"over the {feed_max_columns()}-column limit (FEED_MAX_COLUMNS)"
        )
    names = _column_names(header_fields)
    sku_at = names.index("supplier_sku")
    records = _scan_records(raw, ord(delimiter), line_ends)
    if records is None:
        return _read_csv_exact(raw, encoding=encoding, delimiter=delimiter, names=names)
    if records.fields[0] != len(names):  # a header with a quoted line break: read it exactly
        return _read_csv_exact(raw, encoding=encoding, delimiter=delimiter, names=names)
    starts, ends, fields = records.starts, records.ends, records.fields
    blank = starts == ends
    good = (fields == len(names)) & ~blank
    good[0] = False  # the header
    if records.unterminated:
        good[-1] = False
    quarantined: list[dict[str, Any]] = []

    def text(i: int) -> str:
        return raw[starts[i] : ends[i]].decode(encoding, errors="replace")

    bad = ~good & ~blank
    bad[0] = False  # the header
    for i in np.flatnonzero(bad).tolist():
        if records.unterminated and i == len(starts) - 1:
            # The quote never closes: every line from here on is quarantined on its own, the rows before apply.
            for offset, line in enumerate(text(i).splitlines()):
                quarantined.append(
                    _quarantined_row(
                        i + offset,
                        line,
                        f"unterminated quote (opened in row {i}): not read",
                        delimiter=delimiter,
                        sku_at=sku_at,
                    )
                )
            continue
        quarantined.append(
            _quarantined_row(
                i,
                text(i),
                f"wrong number of fields: {fields[i]} where the header has {len(names)}",
                delimiter=delimiter,
                sku_at=sku_at,
            )
        )
    kept = np.flatnonzero(good)
    if len(kept) + 1 == len(starts):
        body = raw  # the usual clean file is handed to pandas as it is
    else:
        # Only the header and the records of the right width reach pandas, each ending in \n.
        pieces = [raw[starts[0] : ends[0]]]
        pieces.extend(raw[s:e] for s, e in zip(starts[kept].tolist(), ends[kept].tolist(), strict=True))
        body = b"\n".join(pieces) + b"\n"
    if not len(kept):
        frame = pd.DataFrame({name: pd.Series(dtype=str) for name in names})
    else:
        frame = _pandas_read(body, encoding=encoding, delimiter=delimiter, names=names, quoted=b'"' in body)
        if len(frame) != len(kept):
            raise FeedUnreadable(f"CSV cannot be read unambiguously: {len(frame)} rows read, {len(kept)} expected")
    frame["row_number"] = kept.astype(np.int64)
    return ParsedFeed(frame=frame, quarantined=quarantined, encoding=encoding, delimiter=delimiter)


def _pandas_read(body: bytes, *, encoding: str, delimiter: str, names: list[str], quoted: bool) -> pd.DataFrame:
    try:
        return pd.read_csv(
            io.BytesIO(body),
            sep=delimiter,
            header=0,
            names=names,
            index_col=False,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding=encoding,
            on_bad_lines="error",  # every record here has the header's width; anything else is a bug, not data
            skip_blank_lines=False,
            engine="c",
            skipinitialspace=True,
            quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise FeedUnreadable(f"CSV cannot be read: {str(err).strip()[:300]}") from err


class _Lines:
    """The file's lines for the csv module, remembering those of the record being read."""

    def __init__(self, text: str) -> None:
        self.lines = iter(io.StringIO(text, newline=""))
        self.current: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.current.append(line)
        return line


def _read_csv_exact(raw: bytes, *, encoding: str, delimiter: str, names: list[str]) -> ParsedFeed:
    """Record by record with the csv module: for files with quotes in the middle of fields."""
    lines = _Lines(raw.decode(encoding, errors="replace"))
    reader = csv.reader(lines, delimiter=delimiter, skipinitialspace=True, strict=True)
    sku_at = names.index("supplier_sku")
    rows: list[list[str]] = []
    numbers: list[int] = []
    quarantined: list[dict[str, Any]] = []
    number = -1
    while True:
        lines.current = []
        number += 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            consumed = "".join(lines.current)
            if not lines.current or str(err).startswith("unexpected end of data"):
                # An unterminated quote: each line from it to the end is quarantined on its own.
                for offset, line in enumerate(consumed.splitlines()):
                    quarantined.append(
                        _quarantined_row(
                            number + offset,
                            line,
                            f"unterminated quote (opened in row {number}): not read",
                            delimiter=delimiter,
                            sku_at=sku_at,
                        )
                    )
                break
            quarantined.append(
                _quarantined_row(
                    number, consumed.rstrip("\r\n"), f"malformed quoting: {err}", delimiter=delimiter, sku_at=sku_at
                )
            )
            continue
        if number == 0 or not record:
            continue  # the header (already read), a blank line
        if len(record) != len(names):
            quarantined.append(
                _quarantined_row(
                    number,
                    "".join(lines.current).rstrip("\r\n"),
                    f"wrong number of fields: {len(record)} where the header has {len(names)}",
                    delimiter=delimiter,
                    sku_at=sku_at,
                )
            )
            continue
        rows.append(record)
        numbers.append(number)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    frame = pd.DataFrame({name: pd.array(list(values), dtype=str) for name, values in zip(names, columns, strict=True)})
    frame["row_number"] = np.array(numbers, dtype=np.int64)
    return ParsedFeed(frame=frame, quarantined=quarantined, encoding=encoding, delimiter=delimiter)


class _FieldsTwice(dict):
    """An item that named a field twice: JSON and XML readers silently keep one, so we keep neither."""

    twice: tuple[str, ...] = ()


def _item(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    item = dict(pairs)
    if len(item) == len(pairs):
        return item
    marked = _FieldsTwice(item)
    seen: set[str] = set()
    marked.twice = tuple(sorted({k for k, _ in pairs if k in seen or seen.add(k)}))  # type: ignore[func-returns-value]
    return marked


def feed_json_loads(raw: bytes | str) -> Any:
    """JSON as a feed reads it: an object naming a field twice is marked, nesting too deep is unreadable."""
    try:
        return json.loads(raw, object_pairs_hook=_item)
    except RecursionError as err:
        raise FeedUnreadable("JSON cannot be read: nested too deeply") from err
    except (ValueError, UnicodeDecodeError) as err:
        raise FeedUnreadable(f"JSON cannot be read: {err}") from err


def read_xml(raw: bytes) -> ParsedFeed:
    """``<feed><item><supplier_sku/>...</item></feed>``; fields as child elements or attributes.

    defusedxml refuses entity declarations and external references, so a billion-laughs
    file is refused as a whole before it can expand.
    """
    try:
        root = SafeElementTree.fromstring(raw, forbid_dtd=True)
    except DefusedXmlException as err:
        raise FeedUnreadable(f"XML refused: {type(err).__name__} (entities and DTDs are not accepted)") from err
    except SafeElementTree.ParseError as err:
        raise FeedUnreadable(f"XML cannot be read: {err}") from err
    except RecursionError as err:
        raise FeedUnreadable("XML cannot be read: nested too deeply") from err
    records = []
    for element in list(root):
        pairs: list[tuple[str, Any]] = [(k.lower(), v) for k, v in element.attrib.items()]
        for child in element:
            # A field with elements inside is not a value: it is quarantined as an object, not read as "".
            pairs.append((str(child.tag).lower(), {} if len(child) else (child.text or "").strip()))
        records.append(_item(pairs))
    return records_frame(records)


_SCALARS = {"supplier_sku": (str, int), "quantity": (str, int, float), "updated_at": (str,)}


def _wrong_type(record: dict[str, Any]) -> str:
    """Why an item cannot be read as a row ("" when it can): a required field of the wrong type."""
    for name, kinds in _SCALARS.items():
        value = record.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            return f"{name} is {type(value).__name__}, expected {' or '.join(k.__name__ for k in kinds)}"
    return ""


def _text(value: Any) -> str:
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value)
    return text.replace("\x00", "?")  # PostgreSQL text cannot hold NUL (a JSON "\u0000")


def records_frame(records: Sequence[Any]) -> ParsedFeed:
    """Items already parsed (JSON pages, webhook bodies, XML elements) as a text table.

    An item that is not an object, names a field twice (case-insensitively), or carries a
    list, an object or a boolean where a SKU, quantity or timestamp belongs is one quarantined row.
    """
    rows: list[dict[str, Any]] = []
    quarantined: list[dict[str, Any]] = []
    columns: set[str] = set()
    limit = feed_max_columns()
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            quarantined.append(
                {
                    "row_number": number,
                    "supplier_sku": "",
                    "raw": _raw_text(record),
                    "reason": "item is not an object",
                    "named": _values(record),
                }
            )
            continue
        row = _item([(_text(str(k)).lower(), v) for k, v in record.items()])  # "Quantity" and "quantity" clash
        twice = sorted({*getattr(record, "twice", ()), *getattr(row, "twice", ())})
        why = f"field(s) given twice: {', '.join(twice)}" if twice else _wrong_type(row)
        if why:
            sku = row.get("supplier_sku")
            quarantined.append(
                {
                    "row_number": number,
                    "supplier_sku": _text(sku)[:200] if isinstance(sku, str | int) else "",
                    "raw": _raw_text(record),
                    "reason": why,
                    "named": _values(record),
                }
            )
            continue
        columns.update(row)
        if len(columns) > limit + 1:  # row_number is ours
            raise FeedTooLarge(f"items name more than {limit} distinct fields (FEED_MAX_COLUMNS)")
        row = {k: _text(v) for k, v in row.items()}
        row["row_number"] = number
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in REQUIRED_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    if "row_number" not in frame.columns:
        frame["row_number"] = pd.Series(dtype="int64")
    frame = frame.fillna("").astype({c: str for c in frame.columns if c != "row_number"})
    return ParsedFeed(frame=frame, quarantined=quarantined)


def _values(value: Any, depth: int = 0) -> list[str]:
    """The texts and numbers in a quarantined item, a few levels deep: any of them may be the SKU it meant."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        return [_text(str(value))]
    if depth > 3:
        return []
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return [text for child in list(children)[:100] for text in _values(child, depth + 1)]


def _raw_text(value: Any) -> str:
    try:
        return _text(json.dumps(value, default=str, ensure_ascii=False))[:2000]
    except (TypeError, ValueError, RecursionError):
        return _text(repr(value))[:2000]


def read_feed(raw: bytes, *, fmt: str) -> ParsedFeed:
    # PostgreSQL text cannot hold NUL; a file with NUL bytes is damaged, so they become a
    # visible "?" and the rows that carry them are judged (and quarantined) like any other.
    raw = raw.replace(b"\x00", b"?")
    if fmt == "csv":
        return read_csv(raw)
    if fmt == "xml":
        return read_xml(raw)
    if fmt == "json":
        body = feed_json_loads(raw)
        items = body.get("items") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise FeedUnreadable('JSON feed must be a list of items or {"items": [...]}')
        return records_frame(items)
    raise FeedUnreadable(f"unknown feed format {fmt!r}; expected csv, xml or json")
