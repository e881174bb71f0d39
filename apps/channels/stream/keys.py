"""Redis keys of the availability stream, in the cache's namespace (shared by the sync and async sides)."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import caches

# A publisher remembers which channels have open streams for this long; a channel's first stream waits
# this long before its snapshot, so no change committed after the snapshot goes unpublished.
OPEN_CACHE_SECONDS = 1.0
# A process refreshes its channels' "open" mark this often; a mark lives three times longer.
OPEN_REFRESH_SECONDS = 10.0
OPEN_TTL_SECONDS = 3 * OPEN_REFRESH_SECONDS


def key(*parts: object) -> str:
    return caches["default"].make_key("stream:" + ":".join(str(p) for p in parts))


def events(channel_id: int) -> str:
    return key("events", channel_id)


def redis_url() -> str:
    return str(settings.CACHES["default"]["LOCATION"])


def stream_setting(name: str) -> float:
    return float(settings.STOCKROOM[name])
