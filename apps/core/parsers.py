"""Strict JSON for every request body: bounded nesting, no NUL or lone surrogates, no duplicate keys.

PostgreSQL refuses NUL in text and psycopg cannot encode a lone surrogate, so such strings are
refused here, once, instead of turning into a 500 wherever they reach a query. Nesting is
bounded so that no caller (serializers, fingerprints, logging) recurses without limit.
"""

from __future__ import annotations

import json
import math
import re
from typing import IO, Any

from rest_framework.parsers import BaseParser

from apps.core.errors import InvalidJson, InvalidText

MAX_JSON_DEPTH = 32
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def text_is_storable(value: str) -> bool:
    """False for text PostgreSQL cannot store: NUL bytes, unpaired surrogates."""
    return _BAD_TEXT.search(value) is None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidJson(f"The key {key[:40]!r} appears twice in one object.")
            seen.add(key)
    return result


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise InvalidJson(f"The number {text[:40]} is out of range.")
    return number


def _constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not JSON.")


def _check(value: Any, max_depth: int) -> None:
    """Walks the document without recursion: depth of containers, and every key and string."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, str):
            if not text_is_storable(node):
                raise InvalidText()
        elif isinstance(node, dict | list):
            if depth >= max_depth:
                raise InvalidJson(f"The body nests deeper than {max_depth} levels.")
            if isinstance(node, dict):
                if not all(text_is_storable(key) for key in node):
                    raise InvalidText()
                node = node.values()
            pending.extend((child, depth + 1) for child in node)


def json_loads_strict(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a request body, or raise InvalidJson / InvalidText (400) saying what is wrong."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text, object_pairs_hook=_object, parse_float=_finite, parse_constant=_constant)
    except RecursionError:
        raise InvalidJson(f"The body nests deeper than {max_depth} levels.") from None
    except UnicodeDecodeError:
        raise InvalidJson("The body is not UTF-8.") from None
    except ValueError as err:  # json.JSONDecodeError, and integers of more digits than Python converts
        raise InvalidJson(f"The body is not valid JSON: {err}") from None
    _check(value, max_depth)
    return value


class StrictJSONParser(BaseParser):
    """DRF's JSON parser with the checks above; the only parser of the API (JSON over HTTPS)."""

    media_type = "application/json"

    def parse(self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        return json_loads_strict(raw)
