"""Requests per API token: a fixed-window counter in Redis, one round trip per request.

DRF's SimpleRateThrottle keeps every request time in a list that is read and written whole
on each call; at thousands of requests per minute per token that list is the slowest part
of a request. A counter per token and window does the same job in O(1). When Redis does not
answer, requests are let through (the cache is down, not the service) and that is logged once.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from typing import Any

import structlog
from django.conf import settings
from django_redis import get_redis_connection
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

log = structlog.get_logger("stockroom.throttle")

_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


class TokenRateThrottle(SimpleRateThrottle):
    """Requests per token (or per address for anonymous calls) per window, e.g. "6000/min"."""

    scope = "token"
    _script: Any = None
    _warned = False

    def get_cache_key(self, request: Request, view: Any) -> str:
        token = getattr(request, "auth", None)
        ident = f"token:{token.pk}" if token is not None else f"ip:{self.get_ident(request)}"
        # The cache's key prefix too: deployments (or test runs and benchmarks) sharing a Redis
        # count their tokens apart even where their token ids coincide.
        prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
        return f"{prefix}:" + self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        limit, duration = self.parse_rate(self.rate)
        window = int(duration or 60)
        self.now = time.time()
        self._window_end = (int(self.now) // window + 1) * window
        try:
            client = get_redis_connection("default")
            if TokenRateThrottle._script is None:
                TokenRateThrottle._script = client.register_script(_COUNT)
            count = int(TokenRateThrottle._script(keys=[f"{key}:{self._window_end}"], args=[window + 1], client=client))
        except Exception as err:  # Redis down: do not refuse service because the counter is gone
            if not TokenRateThrottle._warned:
                log.warning("throttle_bypassed", error=str(err))
                TokenRateThrottle._warned = True
            return True
        TokenRateThrottle._warned = False
        return count <= (limit or 0)

    def wait(self) -> float:
        return max(0.0, self._window_end - time.time())


def client_address(request: Any) -> str | None:
    """The caller's address: the connection's, or the one the trusted proxies put in front of theirs.

    With ``TRUSTED_PROXY_COUNT = n`` the n-th address from the right of X-Forwarded-For is the
    client's (each trusted proxy appends the address it saw); anything further left is the
    client's own say and ignored. Used for login lockouts and for invalid-token throttling.
    """
    meta = request.META
    candidates = [meta.get("REMOTE_ADDR") or ""]
    trusted = settings.TRUSTED_PROXY_COUNT
    if trusted > 0:
        hops = [hop.strip() for hop in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if len(hops) >= trusted:
            candidates.insert(0, hops[-trusted])
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


class InvalidTokenThrottle:
    """Invalid API tokens per client address and fixed window, counted in Redis.

    Only requests whose token is not already remembered by the process ask Redis, so a valid
    token on the hot path costs no round trip; a guessed token is checked before the database
    is. Redis down: no throttling (logged once), as for TokenRateThrottle.
    """

    _script: Any = None
    _warned = False

    def __init__(self, request: Any) -> None:
        self.address = client_address(request) or "unknown"
        window = max(1, int(settings.API_TOKEN_FAILURE_WINDOW))
        self.window_end = (int(time.time()) // window + 1) * window
        self.ttl = window + 1
        prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
        self.key = f"{prefix}:throttle_token_failures_{self.address}:{self.window_end}"

    def wait(self) -> float:
        return max(1.0, self.window_end - time.time())

    def _run(self, read: bool) -> int:
        try:
            client = get_redis_connection("default")
            if read:
                return int(client.get(self.key) or 0)
            if InvalidTokenThrottle._script is None:
                InvalidTokenThrottle._script = client.register_script(_COUNT)
            return int(InvalidTokenThrottle._script(keys=[self.key], args=[self.ttl], client=client))
        except Exception as err:  # Redis down: do not refuse service because the counter is gone
            if not InvalidTokenThrottle._warned:
                log.warning("token_failure_throttle_bypassed", error=str(err))
                InvalidTokenThrottle._warned = True
            return 0

    def blocked(self) -> bool:
        """Has this address used up its invalid attempts for the window?"""
        return self._run(read=True) >= settings.API_TOKEN_FAILURE_LIMIT

    def record_failure(self) -> None:
        self._run(read=False)


# --- Logs of repeated refusals -------------------------------------------------------------------

# One line per endpoint and window: the first refusal of a window is logged with the number of
# refusals since the previous line (this one included); the others only count. Counted in Redis,
# so every web process shares one count per endpoint; the count key lives a day at most.
_REPEATS = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 86400)
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return n
end
return 0
"""
_repeats_script: Any = None
# Redis down: the same counting per process (a line per process and window, still never one each).
_local_repeats: dict[str, tuple[float, int]] = {}
_local_lock = threading.Lock()


def repeated_refusal_count(endpoint: str, *, window_s: int = 60) -> int:
    """Count one refusal at ``endpoint``: the number to log now (refusals since the last line), or 0 for none."""
    global _repeats_script
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    key = f"{prefix}:refused:{endpoint}"
    try:
        client = get_redis_connection("default")
        if _repeats_script is None:
            _repeats_script = client.register_script(_REPEATS)
        return int(_repeats_script(keys=[f"{key}:n", f"{key}:logged"], args=[window_s], client=client))
    except Exception:
        return _local_repeated_refusal_count(key, window_s)


def _local_repeated_refusal_count(key: str, window_s: int) -> int:
    now = time.monotonic()
    with _local_lock:
        logged_at, count = _local_repeats.get(key, (float("-inf"), 0))
        count += 1
        if now - logged_at >= window_s:
            if len(_local_repeats) > 10_000:  # made-up endpoints must not grow this without bound
                _local_repeats.clear()
            _local_repeats[key] = (now, 0)
            return count
        _local_repeats[key] = (logged_at, count)
        return 0


def log_refusal_once_a_window(
    logger: Any, event: str, *, endpoint: str, window_s: int | None = None, **fields: Any
) -> None:
    """Log a refused request (a forged webhook...) at most once per endpoint and window, with how many there were.

    ``repeats`` on the line is the number of refusals at that endpoint since its previous line,
    this one included; ``window_s`` defaults to ``REFUSAL_LOG_WINDOW_S`` (60 seconds).
    """
    window = window_s or int(getattr(settings, "REFUSAL_LOG_WINDOW_S", 60))
    count = repeated_refusal_count(endpoint, window_s=window)
    if count:
        logger.warning(event, endpoint=endpoint, repeats=count, window_s=window, **fields)
