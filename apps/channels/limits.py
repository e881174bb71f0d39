"""Redis primitives of channel sync: the per-channel token bucket, the pusher lock, and kick flags.

All of them are atomic on the Redis server (Lua scripts, ``SET NX``), so any number of
workers on any number of machines share one bucket and one lock per channel.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from typing import Any

import structlog
from django_redis import get_redis_connection

from apps.channels.conf import redis_key, sync_setting

log = structlog.get_logger("stockroom.sync")

# Refill by elapsed server time, then take one token or say how long until one is there.
# A pause (a channel's Retry-After) blocks the bucket until it passes.
TAKE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'paused_until')
local tokens = tonumber(data[1])
local ts = tonumber(data[2])
local paused = tonumber(data[3]) or 0
if tokens == nil then tokens = burst end
if ts == nil then ts = now end
if now < paused then
  return {0, tostring(paused - now)}
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local ttl = math.ceil((burst / rate + 60) * 1000)
if tokens >= 1 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, '0'}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ttl)
return {0, tostring((1 - tokens) / rate)}
"""

# Pause until now + seconds (never shortening a longer pause) and empty the bucket,
# so that after the pause requests start again at the plain rate.
PAUSE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local untilts = now + tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'paused_until')) or 0
if untilts > current then
  redis.call('HSET', KEYS[1], 'paused_until', tostring(untilts), 'tokens', '0', 'ts', tostring(untilts))
end
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(ARGV[1]) + 120) * 1000))
return tostring(math.max(untilts, current) - now)
"""

RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def redis_client() -> Any:
    return get_redis_connection("default")


class TokenBucket:
    """The channel's rate limit as a token bucket in Redis (rate per second, burst tokens)."""

    def __init__(self, channel_id: int, *, rate_per_s: float, burst: int) -> None:
        margin = float(sync_setting("SYNC_RATE_MARGIN"))
        self.key = redis_key("bucket", channel_id)
        self.rate = max(rate_per_s * margin, 0.001)
        # Never more than the channel's burst; at least one token or nothing would ever go out.
        self.burst = max(1, int(burst * margin))
        self._redis = redis_client()

    def take(self) -> float:
        """Take one token: 0.0 when granted, else seconds until one can be taken (nothing taken)."""
        granted, wait = self._redis.eval(TAKE_SCRIPT, 1, self.key, repr(self.rate), repr(self.burst))
        return 0.0 if int(granted) else max(float(wait), 0.001)

    def pause(self, seconds: float) -> float:
        """Stop taking tokens for ``seconds`` (a channel's Retry-After); returns the pause now in force."""
        return float(self._redis.eval(PAUSE_SCRIPT, 1, self.key, repr(max(0.0, seconds))))


def channel_bucket(channel: Any) -> TokenBucket:
    """The channel's bucket at its effective budget (``Channel.rate_limit``: its own, else its connector's)."""
    rate, burst = channel.rate_limit
    return TokenBucket(channel.pk, rate_per_s=rate, burst=burst)


class PusherLock:
    """One pusher per channel at a time, wherever the workers run.

    The lock lives ``SYNC_LOCK_TTL_S`` and its holder renews it every ``SYNC_LOCK_RENEW_S`` from a thread
    (``keep``) while it pushes, however long a platform takes to answer; only the token that took it can
    renew or release it. A holder that dies stops renewing, so its channel is free within the TTL. A holder
    that cannot renew (its lock taken over after it was cut off from Redis) sees ``held()`` turn false and
    stops before its next request.
    """

    def __init__(self, channel_id: int) -> None:
        self.key = redis_key("lock", channel_id)
        # Who holds it, for a person reading Redis: host and process, then the random part that makes it ours.
        self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
        self.ttl_ms = int(float(sync_setting("SYNC_LOCK_TTL_S")) * 1000)
        # Never less often than twice per TTL, whatever the setting: a lapse between renewals would let a second in.
        self.renew_s = max(0.05, min(float(sync_setting("SYNC_LOCK_RENEW_S")), self.ttl_ms / 2000))
        self._redis = redis_client()
        self._valid_until = 0.0  # monotonic: the lock is ours until then at least, unless lost
        self._lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        asked = time.monotonic()
        if self._redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
            self._valid_until = asked + self.ttl_ms / 1000
            return True
        return False

    def renew(self) -> bool:
        """Extend the lock by its TTL if it is still ours; False once it is not (or Redis did not answer)."""
        asked = time.monotonic()
        try:
            ours = bool(self._redis.eval(RENEW_SCRIPT, 1, self.key, self.token, self.ttl_ms))
        except Exception:  # Redis unreachable: the lock stays ours only until its last renewal runs out
            log.warning("pusher_lock_renew_failed", key=self.key, exc_info=True)
            return False
        if ours:
            self._valid_until = asked + self.ttl_ms / 1000
        else:
            self._lost = True
        return ours

    def held(self) -> bool:
        """Still ours: never lost, and renewed within its TTL (an unrenewed lock may have lapsed)."""
        return not self._lost and time.monotonic() < self._valid_until

    def lapses_in(self) -> float:
        """Seconds until the lock (whoever holds it) lapses unless renewed; 0 when nobody holds it."""
        return max(0.0, int(self._redis.pttl(self.key)) / 1000)

    def keep(self, *, at_most_s: float) -> None:
        """Renew from a thread until ``release`` (the push loop may wait on a slow platform meanwhile), for at
        most ``at_most_s``: a pusher stuck past the longest a push may take lets its channel go."""
        until = time.monotonic() + at_most_s
        self._thread = threading.Thread(
            target=self._renewing, args=(until,), name=f"pusher-lock-{self.key}", daemon=True
        )
        self._thread.start()

    def _renewing(self, until: float) -> None:
        while not self._stop.wait(self.renew_s):
            if time.monotonic() > until:
                log.warning("pusher_lock_overdue", key=self.key)
                return
            self.renew()
            if self._lost:
                log.warning("pusher_lock_lost", key=self.key)
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._redis.eval(RELEASE_SCRIPT, 1, self.key, self.token)


def kick_claim(channel_id: int, *, delayed: bool, ttl_s: float, pipe: Any = None) -> bool:
    """True if no push task for this channel is queued yet (then the caller queues one).

    With ``pipe`` (a pipeline of the same Redis), the claim is queued on it instead and its answer
    comes with the pipeline's (truthy: claimed); the return value then means nothing.
    """
    key = redis_key("kick", channel_id, "delayed" if delayed else "now")
    if pipe is not None:
        pipe.set(key, "1", nx=True, px=int(ttl_s * 1000))
        return False
    return bool(redis_client().set(key, "1", nx=True, px=int(ttl_s * 1000)))


def kick_clear(channel_id: int, *, delayed: bool) -> None:
    """A queued push task starts: later changes must queue their own."""
    redis_client().delete(redis_key("kick", channel_id, "delayed" if delayed else "now"))


def again_mark(channel_id: int) -> None:
    """Tell the pusher holding the lock that more work came while it was busy."""
    redis_client().set(redis_key("again", channel_id), "1", ex=3600)


def again_take(channel_id: int) -> bool:
    return redis_client().getdel(redis_key("again", channel_id)) is not None
