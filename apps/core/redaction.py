"""Keeping secrets out of text people and logs can read: error messages, ``last_error``, feed run
errors, log lines, exception reports.

Three layers: URLs lose their query string and user info (``redact_urls``: WooCommerce's
``query_string_auth`` puts ``consumer_secret=`` in the URL, and requests' exception texts carry the
URL); known credential values are replaced wherever an error is formatted (``redact(text,
secrets)``); and the log formatter runs every line through both (``redact_log_event``), with the
credential values this process has decrypted (``secrets_remember``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
# Shorter values would redact ordinary words; no real credential is this short.
_MIN_SECRET_LENGTH = 6
_REMEMBERED_MAX = 4096

# A query string (what follows "?" up to a space, quote or bracket) and the user info of a URL.
_QUERY = re.compile(r"\?[^\s'\"<>()\[\]{},]+")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@")
# key=value or "key": "value" where the key names a credential, in any text.
_SECRET_KEY = r"[A-Za-z0-9_-]*(?:secret|token|password|passwd|api[_-]?key|authorization|signature)[A-Za-z0-9_-]*"
_KEY_VALUE = re.compile(rf"(?i)\b({_SECRET_KEY})(\s*[=:]\s*['\"]?)([^\s'\"&,;)}}\]]+)")
_SECRET_FIELD = re.compile(rf"(?i)^{_SECRET_KEY}$|^credentials$|^secrets?$")

_remembered: dict[str, None] = {}
_remembered_lock = threading.Lock()
# The remembered values with their encodings, by their first characters (longest first under each):
# a log line is scanned once, however many values there are. Rebuilt only when a new value comes.
_remembered_index: dict[str, tuple[str, ...]] = {}


def redact_urls(text: str) -> str:
    """``text`` with every URL's query string and user info replaced (``?[redacted]``, ``//[redacted]@``)."""
    if not text:
        return text
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    return _QUERY.sub(f"?{REDACTED}", text)


def _variants(value: str) -> set[str]:
    """How a credential may appear in text: as is, and encoded as in a URL or a form."""
    return {value, quote(value, safe=""), quote_plus(value, safe="")}


def _longest_first(values: Iterable[str]) -> list[str]:
    # Longest first: a secret that contains another is replaced whole.
    return sorted({variant for value in values for variant in _variants(value)}, key=len, reverse=True)


def _index(values: list[str]) -> dict[str, tuple[str, ...]]:
    index: dict[str, list[str]] = {}
    for value in values:  # longest first, and so under each prefix
        index.setdefault(value[:_MIN_SECRET_LENGTH], []).append(value)
    return {prefix: tuple(found) for prefix, found in index.items()}


def _replace_known(text: str, index: Mapping[str, tuple[str, ...]]) -> str:
    """``text`` with every value of ``index`` replaced, in one pass over the text."""
    if not index:
        return text
    parts: list[str] = []
    start = position = 0
    end = len(text) - _MIN_SECRET_LENGTH
    while position <= end:
        for value in index.get(text[position : position + _MIN_SECRET_LENGTH], ()):
            if text.startswith(value, position):
                parts += [text[start:position], REDACTED]
                position = start = position + len(value)
                break
        else:
            position += 1
    parts.append(text[start:])
    return "".join(parts)


def secret_values(values: Iterable[Any] | Mapping[str, Any]) -> list[str]:
    """The string values worth redacting among ``values`` (a credentials mapping or a list)."""
    items = values.values() if isinstance(values, Mapping) else values
    return [str(v) for v in items if isinstance(v, str) and len(v) >= _MIN_SECRET_LENGTH]


def secrets_remember(values: Iterable[Any] | Mapping[str, Any]) -> None:
    """This process holds these credential values now: the log formatter redacts them from every line."""
    global _remembered_index
    found = [value for value in secret_values(values) if value not in _remembered]
    if not found:
        return
    with _remembered_lock:
        for value in found:
            _remembered[value] = None
        while len(_remembered) > _REMEMBERED_MAX:
            _remembered.pop(next(iter(_remembered)))
        _remembered_index = _index(_longest_first(_remembered))


def redact(text: str, secrets: Iterable[Any] | Mapping[str, Any] = ()) -> str:
    """``text`` without URL query strings and user info, credential-looking ``key=value`` pairs, the given
    secret values and the values this process remembers (``secrets_remember``)."""
    if not text:
        return text
    text = redact_urls(str(text))
    text = _KEY_VALUE.sub(rf"\1\2{REDACTED}", text)
    for value in _longest_first(secret_values(secrets)):
        if value in text:
            text = text.replace(value, REDACTED)
    return _replace_known(text, _remembered_index)


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_FIELD.match(key) and value not in (None, "", [], {}):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value("", v) for v in value]
    return value


def redact_log_event(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: every value of the line (the message and a formatted exception too) redacted;
    a key that names a credential keeps only ``[redacted]``."""
    for key, value in list(event_dict.items()):
        if key.startswith("_"):  # structlog's own (the stdlib record)
            continue
        event_dict[key] = _redact_value(key, value) if key != "event" else redact(str(value))
    return event_dict
