"""Tunables of channel sync, from ``settings.STOCKROOM`` or the environment, with sane defaults.

Workers read these at call time, so a test or benchmark can set them in the environment
of the worker processes it starts.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, float] = {
    # Tier 1 work younger than this waits for company unless a full batch is there: a sale
    # burst becomes one request instead of one per sale, at a fraction of the seconds allowed.
    "SYNC_TIER1_GATHER_S": 0.3,
    # Tier 2 changes wait this long so that a burst of adjustments goes out as one push.
    "SYNC_TIER2_DELAY_S": 2.0,
    # Tier 3 changes are batched: pushed once their oldest change is this old (beat sweep).
    "SYNC_TIER3_BATCH_S": 60.0,
    "SYNC_MAX_ATTEMPTS": 8,
    "SYNC_BACKOFF_BASE_S": 2.0,
    "SYNC_BACKOFF_MAX_S": 300.0,
    # One pusher per channel: the lock expires by itself when a worker dies without releasing it.
    "SYNC_LOCK_TTL_S": 30.0,
    # A pusher gives its worker slot back after this long and queues a follow-up for the rest.
    "SYNC_PUSH_SLICE_S": 20.0,
    # Waits for a token or a Retry-After up to this long happen inline; longer ones are rescheduled.
    "SYNC_INLINE_WAIT_S": 3.0,
    "SYNC_HTTP_TIMEOUT_S": 10.0,
    # While a channel's platform fails as a whole, it is tried again at least this often (its rows'
    # backoff is capped here, and a channel whose work all died gets one probe push this often), so
    # every listing is right within about this long of the platform answering again.
    "SYNC_PROBE_S": 15.0,
    # Pushes run at this share of the channel's rate and burst, so jitter never trips its limit.
    "SYNC_RATE_MARGIN": 0.9,
    # Held raises (orders not imported yet) are looked at again this often.
    "SYNC_HOLD_RECHECK_S": 30.0,
    "SYNC_RECONCILE_PAGE": 100,
    # 1: drop pending work whose quantity equals what the channel was last told (saves updates,
    # not requests: batches are one request either way). Off by default: every dirty listing
    # gets a fresh absolute push, which also heals a channel that lost an update.
    "SYNC_SKIP_UNCHANGED": 0,
}


def sync_setting(name: str) -> Any:
    configured = getattr(settings, "STOCKROOM", {}).get(name)
    if configured is not None:
        return configured
    raw = os.environ.get(name)
    default = DEFAULTS[name]
    if raw is None or raw == "":
        return default
    return type(default)(float(raw)) if isinstance(default, int) else float(raw)


def redis_key(*parts: object) -> str:
    """Keys of the sync machinery, under the project's cache prefix so parallel setups never share them."""
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "stockroom")
    return ":".join([str(prefix), "sync", *(str(p) for p in parts)])
