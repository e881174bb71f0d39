"""A per-process circuit breaker in front of Redis: when Redis stops answering, calls fail at once.

Every Redis call of a process (the cache, throttles, the availability cache, sync kicks, token
buckets) goes through the default cache's connection pool, whose connections are
``BreakerConnection``, with a breaker per Redis server: after ``REDIS_BREAKER_FAILURES``
consecutive timeouts or refused connections the breaker opens, and for ``REDIS_BREAKER_OPEN_S``
seconds every call raises ``RedisCircuitOpen`` (a ``redis.ConnectionError``) without touching the
network. Then one call is let through as a trial: its answer closes the breaker, its failure
opens it again. Each caller already treats a Redis error as "degrade": the cache reads
PostgreSQL, a throttle lets the request pass, a sync kick is left to the beat sweep. So a web
host cut off from Redis pays the socket timeout (``SOCKET_TIMEOUT``) a couple of times per
``REDIS_BREAKER_OPEN_S``, not on every call.

Not a Django module on purpose: the settings name the factory by its dotted path.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog
from django_redis.pool import ConnectionFactory
from redis.connection import AbstractConnection, Connection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = structlog.get_logger("stockroom.cache")


class RedisCircuitOpen(RedisConnectionError):
    """Redis failed just before; this call was not tried."""


class CircuitBreaker:
    """Closed (calls go through), open (calls refused), half-open (one trial call at a time)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until = 0.0
        self._trial_since: float | None = None
        self.opened = 0  # how often it opened, for tests and metrics

    @staticmethod
    def _config() -> tuple[int, float]:
        from django.conf import settings

        return int(getattr(settings, "REDIS_BREAKER_FAILURES", 2)), float(getattr(settings, "REDIS_BREAKER_OPEN_S", 5))

    @property
    def is_open(self) -> bool:
        return self._open_until > 0.0

    def allow(self) -> bool:
        """Whether a call may go to the network now (claims the trial when the open time is over)."""
        if self._open_until == 0.0:
            return True
        now = time.monotonic()
        with self._lock:
            if self._open_until == 0.0:
                return True
            if now < self._open_until:
                return False
            # Half-open: one trial; a trial that never reported (its caller gave up) is replaced after a while.
            if self._trial_since is None or now - self._trial_since > self._config()[1]:
                self._trial_since = now
                return True
            return False

    def succeeded(self) -> None:
        if self._failures == 0 and self._open_until == 0.0:
            return
        with self._lock:
            was_open = self._open_until > 0.0
            self._failures = 0
            self._open_until = 0.0
            self._trial_since = None
        if was_open:
            log.info("redis_breaker_closed", breaker=self.name)

    def failed(self, err: BaseException) -> None:
        threshold, open_s = self._config()
        with self._lock:
            self._failures += 1
            trial = self._trial_since is not None
            if not trial and self._failures < threshold:
                return
            first = self._open_until == 0.0
            self._open_until = time.monotonic() + open_s
            self._trial_since = None
            if first:
                self.opened += 1
        if first:
            log.warning("redis_breaker_opened", breaker=self.name, seconds=open_s, error=f"{type(err).__name__}: {err}")

    def reset(self) -> None:
        with self._lock:
            self._failures = 0
            self._open_until = 0.0
            self._trial_since = None


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(address: str) -> CircuitBreaker:
    """The process's breaker of one Redis server ("host:port"): a server that fails opens only its own."""
    breaker = _breakers.get(address)
    if breaker is None:
        with _breakers_lock:
            breaker = _breakers.setdefault(address, CircuitBreaker(address))
    return breaker


def breakers_reset() -> None:
    """Close every breaker of the process (tests)."""
    for breaker in list(_breakers.values()):
        breaker.reset()


_FAILURES = (RedisConnectionError, RedisTimeoutError, OSError)


class _Breaking(AbstractConnection):
    """A Redis connection that asks the process's breaker before each use and tells it the outcome."""

    _trial = False  # this connection carries the half-open trial

    @property
    def address(self) -> str:
        raise NotImplementedError

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.breaker = breaker_for(self.address)

    def _admit(self) -> None:
        if self._trial:
            return
        if not self.breaker.allow():
            raise RedisCircuitOpen(f"Redis did not answer lately; {self.address} not tried (breaker open)")
        self._trial = self.breaker.is_open

    def _failed(self, err: BaseException) -> None:
        self._trial = False
        self.breaker.failed(err)

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if self._sock:
            return
        self._admit()
        try:
            super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)
        except RedisCircuitOpen:
            raise
        except _FAILURES as err:
            self._failed(err)
            raise

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self._admit()
        try:
            super().send_packed_command(command, check_health=check_health)
        except RedisCircuitOpen:
            raise
        except _FAILURES as err:
            self._failed(err)
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = super().read_response(*args, **kwargs)
        except _FAILURES as err:
            self._failed(err)
            raise
        self._trial = False
        self.breaker.succeeded()
        return response


class BreakerConnection(_Breaking, Connection):
    """Redis over TCP, behind the breaker of its host and port."""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class BreakerUnixConnection(_Breaking, UnixDomainSocketConnection):
    """Redis over a unix socket (the embedded Redis of `make run`), behind the breaker of its path."""

    @property
    def address(self) -> str:
        return self.path


class BreakerConnectionFactory(ConnectionFactory):
    """django-redis's connection factory, with pools of breaker connections (the cache's CONNECTION_FACTORY)."""

    def get_connection_pool(self, params: dict[str, Any]) -> Any:
        unix = str(params.get("url", "")).startswith("unix://")
        return super().get_connection_pool(
            {**params, "connection_class": BreakerUnixConnection if unix else BreakerConnection}
        )
