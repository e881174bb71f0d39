"""Reading an order body: the plain reader (``order_create_plain``) and the serializer agree.

The plain reader takes the common body without building the serializer's fields; anything it does
not take the serializer reads. Where it takes a body, it must give what the serializer validates it
to, and it must never take a body the serializer refuses.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.orders.api.serializers import MAX_LINE_QUANTITY, OrderCreateSerializer, order_create_plain
from apps.orders.services.reserve import MAX_HOLD_MINUTES


def _serializer(data: Any) -> dict[str, Any] | None:
    serializer = OrderCreateSerializer(data=data)
    if not serializer.is_valid():
        return None
    validated = dict(serializer.validated_data)
    validated["lines"] = [dict(line) for line in validated["lines"]]
    return validated


def _agrees(data: Any) -> None:
    plain = order_create_plain(data)
    if plain is not None:
        assert plain == _serializer(data), data


def test_a_plain_body_reads_as_the_serializer_reads_it():
    body = {"external_id": "WEB-1", "lines": [{"sku": "HOOD-M", "quantity": 2}, {"sku": "CAP", "quantity": 1}]}
    assert order_create_plain(body) == _serializer(body)
    assert order_create_plain({**body, "hold_minutes": 30, "mode": "import", "note": "ignored"}) == _serializer(
        {**body, "hold_minutes": 30, "mode": "import", "note": "ignored"}
    )


def test_what_the_plain_reader_leaves_to_the_serializer():
    good = {"external_id": "WEB-1", "lines": [{"sku": "A", "quantity": 1}]}
    left = [
        [good],  # not an object
        {**good, "external_id": " WEB-1"},  # the serializer trims it
        {**good, "external_id": "x" * 121},
        {**good, "external_id": "WEB-é"},  # not ASCII: the serializer checks the text
        {**good, "external_id": 12},  # the serializer turns it into "12"
        {**good, "lines": []},
        {**good, "lines": [{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 2}]},
        {**good, "lines": [{"sku": "A", "quantity": "1"}]},
        {**good, "lines": [{"sku": "A", "quantity": True}]},
        {**good, "lines": [{"sku": "A", "quantity": 0}]},
        {**good, "lines": [{"sku": "A", "quantity": MAX_LINE_QUANTITY + 1}]},
        {**good, "hold_minutes": None},
        {**good, "hold_minutes": MAX_HOLD_MINUTES + 1},
        {**good, "mode": "sell"},
        {**good, "mode": ["reserve"]},
    ]
    for body in left:
        assert order_create_plain(body) is None, body


_text = st.one_of(st.text(max_size=130), st.sampled_from(["A", "B", " A", "A\x00", "x" * 100, "x" * 101]))
_number = st.one_of(
    st.integers(min_value=-2, max_value=MAX_HOLD_MINUTES + 2),
    st.sampled_from([MAX_LINE_QUANTITY, MAX_LINE_QUANTITY + 1]),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
_line = st.dictionaries(st.sampled_from(["sku", "quantity", "x"]), st.one_of(_text, _number), max_size=3)
_body = st.dictionaries(
    st.sampled_from(["external_id", "lines", "hold_minutes", "mode", "x"]),
    st.one_of(_text, _number, st.lists(_line, max_size=3), st.sampled_from(["reserve", "import"])),
    max_size=5,
)


@settings(max_examples=400, deadline=None)
@given(_body)
def test_the_plain_reader_never_disagrees_with_the_serializer(body):
    _agrees(body)
