"""Turning supplier bytes (CSV, XML, JSON items) into one table of text columns, with every bad line kept.

Nothing here touches the database. The result always has the columns ``supplier_sku``,
``quantity``, ``updated_at`` (text, possibly empty) and ``row_number`` (1-based data row),
plus whatever extra columns the supplier sent; lines that cannot even be split into fields
come back as rejections so that none is silently lost.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeElementTree

REQUIRED_COLUMNS = ("supplier_sku", "quantity", "updated_at")
DELIMITERS = (",", ";", "\t", "|")
_SKIPPED_LINE = re.compile(r"Skipping line (\d+): (.*)")


class FeedUnreadable(Exception):
    """The feed as a whole cannot be read: wrong format, missing columns, broken quoting, XML entities."""


@dataclass
class ParsedFeed:
    frame: pd.DataFrame
    rejections: list[dict[str, Any]] = field(default_factory=list)  # row_number, supplier_sku, raw, reason
    encoding: str = "utf-8"
    delimiter: str = ","

    @property
    def rows_read(self) -> int:
        return len(self.frame) + len(self.rejections)


def detect_encoding(raw: bytes) -> str:
    """UTF-8 (with or without a byte-order mark), else Latin-1, which can decode anything."""
    if raw.startswith(b"\xef\xbb\xbf"):
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


def _normalise_columns(frame: pd.DataFrame) -> pd.DataFrame:
    frame.columns = [str(c).strip().lower().lstrip("\ufeff") for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise FeedUnreadable(
            f"missing column(s): {', '.join(missing)}; expected a header with {', '.join(REQUIRED_COLUMNS)}"
        )
    return frame


def read_csv(raw: bytes) -> ParsedFeed:
    if not raw.strip():
        return ParsedFeed(frame=pd.DataFrame(columns=[*REQUIRED_COLUMNS, "row_number"]))
    encoding = detect_encoding(raw)
    first_line = raw[: raw.find(b"\n") if b"\n" in raw else len(raw)].decode(encoding, errors="replace")
    delimiter = detect_delimiter(first_line)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(
                io.BytesIO(raw),
                sep=delimiter,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                encoding=encoding,
                on_bad_lines="warn",
                engine="c",
                skipinitialspace=True,
            )
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
            raise FeedUnreadable(f"CSV cannot be read: {str(err).strip()[:300]}") from err
    frame = _normalise_columns(frame)
    bad: dict[int, str] = {}
    for warning in caught:
        for line, why in _SKIPPED_LINE.findall(str(warning.message)):
            bad[int(line) - 1] = why.strip()  # file line 1 is the header
    rejections: list[dict[str, Any]] = []
    if bad:
        lines = raw.decode(encoding, errors="replace").splitlines()
        for row_number, why in sorted(bad.items()):
            text = lines[row_number] if row_number < len(lines) else ""
            rejections.append(
                {
                    "row_number": row_number,
                    "supplier_sku": text.split(delimiter, 1)[0][:200],
                    "raw": text[:2000],
                    "reason": f"malformed line: {why}",
                }
            )
    total = len(frame) + len(bad)
    numbers = np.arange(1, total + 1, dtype=np.int64)
    if bad:
        numbers = numbers[~np.isin(numbers, np.fromiter(bad, dtype=np.int64))]
    frame["row_number"] = numbers[: len(frame)]
    return ParsedFeed(frame=frame, rejections=rejections, encoding=encoding, delimiter=delimiter)


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
    records = []
    for element in list(root):
        record = {k.lower(): v for k, v in element.attrib.items()}
        for child in element:
            record[child.tag.lower()] = (child.text or "").strip()
        records.append(record)
    return records_frame(records)


def records_frame(records: Sequence[Any]) -> ParsedFeed:
    """Items already parsed (JSON pages, webhook bodies, XML elements) as a text table."""
    rows: list[dict[str, Any]] = []
    rejections: list[dict[str, Any]] = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            rejections.append(
                {"row_number": number, "supplier_sku": "", "raw": _raw_text(record), "reason": "item is not an object"}
            )
            continue
        row: dict[str, Any] = {
            str(k).lower(): ("" if v is None else v if isinstance(v, str) else json.dumps(v)) for k, v in record.items()
        }
        row["row_number"] = number
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in REQUIRED_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    if "row_number" not in frame.columns:
        frame["row_number"] = pd.Series(dtype="int64")
    frame = frame.fillna("").astype({c: str for c in frame.columns if c != "row_number"})
    return ParsedFeed(frame=frame, rejections=rejections)


def _raw_text(value: Any) -> str:
    try:
        return json.dumps(value, default=str)[:2000]
    except (TypeError, ValueError):
        return repr(value)[:2000]


def read_feed(raw: bytes, *, fmt: str) -> ParsedFeed:
    # PostgreSQL text cannot hold NUL; a file with NUL bytes is damaged, so they become a
    # visible "?" and the rows that carry them are judged (and quarantined) like any other.
    raw = raw.replace(b"\x00", b"?")
    if fmt == "csv":
        return read_csv(raw)
    if fmt == "xml":
        return read_xml(raw)
    if fmt == "json":
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise FeedUnreadable(f"JSON cannot be read: {err}") from err
        items = body.get("items") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise FeedUnreadable('JSON feed must be a list of items or {"items": [...]}')
        return records_frame(items)
    raise FeedUnreadable(f"unknown feed format {fmt!r}; expected csv, xml or json")
