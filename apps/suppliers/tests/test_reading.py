"""The feed readers on arbitrary input (hypothesis): nothing raises but FeedUnreadable or FeedTooLarge,
every data line ends up in the frame or is quarantined, and no row takes another row's fields."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.suppliers.limits import FeedTooLarge
from apps.suppliers.services.reading import FeedUnreadable, read_feed, records_frame

HEADER = ("supplier_sku", "quantity", "updated_at")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Small alphabets make the interesting bytes (quotes, delimiters, line breaks) common.
_text = st.text(alphabet=st.sampled_from(list('ab1,;"\n\r \t|\x00é')), max_size=12)
# No leading blank: the reader skips initial spaces in unquoted fields (skipinitialspace), not in quoted ones.
_field = st.text(alphabet=st.sampled_from(list('ab1-_. é,;"|\t\n')), max_size=8).map(lambda f: f.lstrip(" \t"))


def _read(raw: bytes, fmt: str = "csv"):
    try:
        return read_feed(raw, fmt=fmt)
    except (FeedUnreadable, FeedTooLarge):
        return None


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_the_documented_errors(raw):
    for fmt in ("csv", "xml", "json"):
        parsed = _read(raw, fmt)
        if parsed is not None:
            numbers = [*parsed.frame["row_number"].tolist(), *(r["row_number"] for r in parsed.quarantined)]
            assert len(numbers) == len(set(numbers)), "a row number twice"


@FAST
@given(st.lists(_text, max_size=12).map(lambda lines: "supplier_sku,quantity,updated_at\n" + "\n".join(lines)))
def test_arbitrary_csv_lines_only_ever_raise_the_documented_errors(text):
    parsed = _read(text.encode())
    if parsed is not None:
        assert list(parsed.frame.columns[:3]) == list(HEADER)
        assert all(isinstance(r["reason"], str) and r["reason"] for r in parsed.quarantined)


_row = st.lists(_field, min_size=1, max_size=5)
_plain = st.text(alphabet=st.sampled_from(list("ab1-_.é")), max_size=8)


@FAST
@given(
    rows=st.lists(_row, max_size=15),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    quote_all=st.booleans(),
    crlf=st.booleans(),
)
def test_every_row_is_in_the_frame_with_its_own_fields_or_quarantined(rows, delimiter, quote_all, crlf):
    """Rows of any width, quoted or not: right-width rows come back whole at their own number, the rest quarantined."""
    out = io.StringIO()
    writer = csv.writer(
        out,
        delimiter=delimiter,
        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL,
        lineterminator="\r\n" if crlf else "\n",
    )
    writer.writerow(HEADER)
    # Every row carries its own number in its SKU, so a shifted field would show.
    numbered = [[f"R{n}-{row[0]}", *row[1:]] for n, row in enumerate(rows, start=1)]
    writer.writerows(numbered)
    parsed = read_feed(out.getvalue().encode(), fmt="csv")
    frame = {int(r["row_number"]): r for r in parsed.frame.to_dict("records")}
    quarantined = {r["row_number"]: r for r in parsed.quarantined}
    assert set(frame).isdisjoint(quarantined)
    assert set(frame) | set(quarantined) == set(range(1, len(rows) + 1)), "a row lost or invented"
    for n, row in enumerate(numbered, start=1):
        if len(row) == len(HEADER):
            got = frame[n]
            assert [got[c] for c in HEADER] == row
        else:
            assert n in quarantined and quarantined[n]["reason"].startswith("wrong number of fields")
            assert quarantined[n]["supplier_sku"] == row[0].strip()


@FAST
@given(rows=st.lists(st.tuples(_plain, _plain), min_size=1, max_size=10), cut=st.integers(min_value=0))
def test_an_unterminated_quote_loses_no_line_and_keeps_the_rows_before(rows, cut):
    lines = [f"S{n}-{a},{len(b)},{b}" for n, (a, b) in enumerate(rows, start=1)]
    at = cut % len(lines)
    lines[at] = lines[at].replace(",", ',"', 1)  # opens a quote that never closes
    parsed = read_feed(("supplier_sku,quantity,updated_at\n" + "\n".join(lines) + "\n").encode(), fmt="csv")
    assert parsed.frame["row_number"].tolist() == list(range(1, at + 1))
    assert [r["row_number"] for r in parsed.quarantined] == list(range(at + 1, len(lines) + 1))
    assert [r["raw"] for r in parsed.quarantined] == lines[at:]


_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)
_item = st.dictionaries(st.sampled_from([*HEADER, "Quantity", "title", "x"]), _json_value, max_size=5)


@pytest.mark.slow
@FAST
@given(st.lists(_item | _json_value, max_size=10))
def test_json_items_of_any_shape_are_rows_or_quarantined(items):
    parsed = records_frame(items)
    numbers = sorted([*parsed.frame["row_number"].tolist(), *(r["row_number"] for r in parsed.quarantined)])
    assert numbers == list(range(1, len(items) + 1))
    for row in parsed.frame.to_dict("records"):
        item = items[int(row["row_number"]) - 1]
        sku = item.get("supplier_sku")
        assert row["supplier_sku"] == ("" if sku is None else str(sku) if not isinstance(sku, str) else sku)
        assert all("\x00" not in str(v) for v in row.values())
    same = read_feed(json.dumps({"items": items}).encode(), fmt="json")
    assert len(same.frame) == len(parsed.frame)


@pytest.mark.parametrize("fmt", ["csv", "json", "xml"])
def test_nul_and_deep_nesting_are_documented_errors_or_rows(fmt):
    for raw in (b"\x00" * 50, b"[" * 50_000, b"<a>" * 50_000, b'"' * 1000):
        _read(raw, fmt)
