"""How big a supplier feed may be (settings FEED_MAX_BYTES, FEED_MAX_LINE_BYTES, FEED_MAX_COLUMNS).

A feed over a limit is refused whole, before it is parsed: its run ends ``refused`` with the
reason, and the last good data stays.
"""

from __future__ import annotations

from typing import Protocol

from django.conf import settings


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class FeedTooLarge(Exception):
    """The feed is over a size limit: refused whole, nothing read into stock."""


def feed_max_bytes(override: object = None) -> int:
    """The byte limit; a supplier's own ``max_bytes`` setting may lower it, never raise it."""
    limit = int(settings.FEED_MAX_BYTES)
    try:
        return min(limit, int(override)) if override is not None else limit  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return limit


def feed_max_line_bytes() -> int:
    return int(settings.FEED_MAX_LINE_BYTES)


def feed_max_columns() -> int:
    return int(settings.FEED_MAX_COLUMNS)


def feed_size_check(size: int, *, limit: int, name: str = "feed") -> None:
    if size > limit:
        raise FeedTooLarge(f"{name}: {size} bytes is over the {limit}-byte limit (FEED_MAX_BYTES)")


def feed_read_capped(handle: _Readable, *, limit: int, name: str = "feed") -> bytes:
    """Read a whole file, but never more than ``limit`` bytes: a file that grows while read is refused too."""
    data = handle.read(limit + 1)
    feed_size_check(len(data), limit=limit, name=name)
    return data
