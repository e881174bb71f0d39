"""The Redis cache in front of listing availability, and the rule that keeps it true.

Scheme: version stamps checked on every read, bumped after every commit.

- Each listing has a version key; a cached entry records the listing version and a global
  epoch it was computed under. A read fetches the epoch, the versions and the entries in one
  ``MGET`` and serves an entry only when both stamps still match.
- A miss reads the stamps *before* querying PostgreSQL and stores the result under those
  stamps. A writer bumps the versions only *after* its commit (``transaction.on_commit``).
  So a reader whose query started before the commit stored its result under the old
  version, which the bump has already replaced, or will replace, by the time the writer's
  call returns: once a committing call has returned, no reader is served the old value.
  (Plain delete-on-commit has a hole here: a reader that queried before the commit can
  write the old value back after the delete.)
- Bumps write a fresh random token, never a counter, so a version key that expires and
  reappears cannot match an entry stamped in an earlier life. Version keys live four times
  longer than entries, and a result is not stored when its computation took longer than an
  entry lives, so an entry never outlives the version it was checked against.
- Stock moves bump the listings they reach (item -> products containing it -> their
  listings in channels selling from that location). Configuration changes (channels,
  listings, channel locations, product make-up, locations) are rare and bump the epoch,
  which invalidates everything at once.
- An answer that changes with time alone (supplier stock reaching its max age) carries
  ``valid_until`` and is treated as a miss from that moment.
- With Redis unreachable the cache is bypassed for a few seconds at a time, logged once per
  outage, and answers come from PostgreSQL. Bumps lost during the outage are made up by an
  epoch bump on the first successful contact; entries also expire after
  ``AVAILABILITY_CACHE_SECONDS`` as a last bound.
- Across hosts: a writer whose host cannot reach Redis (while the others can) cannot bump the
  versions the other hosts read. So every entry also records a second epoch that PostgreSQL
  keeps (the sequence ``channels_availability_epoch``), read by every cached read before its
  stamps, in one cheap query; a writer that could not bump Redis after its commit advances that
  sequence before its call returns. Entries stamped before are not served again on any host.
  (A sequence, not a row: advancing it takes no lock, and it is seen by every session at once.)
  Only if PostgreSQL also fails between the commit and that advance can a writer return with
  the old value still served, for at most ``AVAILABILITY_CACHE_SECONDS``; that is logged.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import structlog
from django.conf import settings
from django.core.cache import caches
from django.db import DatabaseError, connection, transaction
from prometheus_client import Counter

from apps.channels.selectors import ListingAvailability, listings_reached
from apps.channels.stream.publish import stream_publish_after_commit

log = structlog.get_logger("stockroom.cache")

AVAILABILITY_CACHE = Counter(
    "stockroom_availability_cache_listings", "Listing availability reads by cache result.", ["result"]
)
BACKOFF_SECONDS = 2.0
_MISSING = "-"


class _RedisState:
    """Per-process memory of an outage: when to try again, and whether bumps were lost."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.skip_until = 0.0
        self.failing = False

    def available(self) -> bool:
        return time.monotonic() >= self.skip_until

    def failed(self, err: BaseException, during: str) -> None:
        with self.lock:
            self.skip_until = time.monotonic() + BACKOFF_SECONDS
            first = not self.failing
            self.failing = True
        if first:
            log.warning("availability_cache_bypassed", during=during, error=f"{type(err).__name__}: {err}"[:300])

    def succeeded(self, client: Any) -> None:
        if not self.failing:
            return
        # Bumps may have been lost while Redis was away: forget everything cached before. If this
        # fails, Redis is still away and the flag stays up.
        client.set(_key("epoch"), secrets.token_hex(8))
        with self.lock:
            was_failing, self.failing = self.failing, False
        if was_failing:
            log.info("availability_cache_restored")

    def reset(self) -> None:
        with self.lock:
            self.skip_until = 0.0
            self.failing = False


state = _RedisState()

_EPOCH_SEQUENCE = "channels_availability_epoch"


def _database_epoch() -> str:
    """The epoch PostgreSQL keeps; read before the Redis stamps (one round trip, no lock)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT last_value FROM {_EPOCH_SEQUENCE}")
        return str(cursor.fetchone()[0])


def database_epoch_bump(reason: str) -> None:
    """Nothing cached before now is served again, on any host (Redis could not be told)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT nextval('{_EPOCH_SEQUENCE}')")
    except DatabaseError as err:  # the write committed; only the invalidation is lost (bounded by the TTL)
        log.error("availability_invalidation_lost", reason=reason, error=f"{type(err).__name__}: {err}"[:300])
        return
    log.info("availability_database_epoch_bumped", reason=reason)


def entry_seconds() -> int:
    return int(settings.STOCKROOM.get("AVAILABILITY_CACHE_SECONDS", 30))


def _key(*parts: object) -> str:
    return caches["default"].make_key("avail:" + ":".join(str(p) for p in parts))


def _client() -> Any | None:
    """The raw Redis client behind the default cache, or None when the cache is not Redis."""
    backend = caches["default"]
    client = getattr(backend, "client", None)
    if client is None or not hasattr(client, "get_client"):
        return None
    return client.get_client(write=True)


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError)


def _encode(epoch: str, version: str, value: ListingAvailability) -> str:
    until = value.valid_until.timestamp() if value.valid_until else None
    return json.dumps([epoch, version, value.channel_sku, value.atp, value.available, until], separators=(",", ":"))


def _stamp(redis_epoch: str, database_epoch: str) -> str:
    return f"{redis_epoch}/{database_epoch}"


def _decode(listing_id: int, raw: bytes) -> tuple[str, str, ListingAvailability] | None:
    try:
        epoch, version, sku, atp, available, until = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if until is not None and until <= time.time():
        return None
    valid_until = datetime.fromtimestamp(until, tz=UTC) if until is not None else None
    return epoch, version, ListingAvailability(listing_id, sku, atp, available, valid_until)


def _text(raw: bytes | None) -> str:
    return raw.decode() if raw is not None else _MISSING


def availability_cached(
    listing_ids: Sequence[int], *, compute: Callable[[Sequence[int]], dict[int, ListingAvailability]]
) -> dict[int, ListingAvailability]:
    """Availability of these listings: cached entries whose stamps still match, the rest computed."""
    ids = sorted(set(listing_ids))
    if not ids:
        return {}
    client = _client() if state.available() else None
    if client is None:
        AVAILABILITY_CACHE.labels(result="bypass").inc(len(ids))
        return compute(ids)
    keys = [_key("epoch"), *(_key("v", i) for i in ids), *(_key("e", i) for i in ids)]
    started = time.monotonic()  # the stamps are read before PostgreSQL is, never after
    database_epoch = _database_epoch()
    try:
        state.succeeded(client)  # after an outage: bump the epoch before reading any stamp
        raw = client.mget(keys)
    except _redis_errors() as err:
        state.failed(err, "read")
        AVAILABILITY_CACHE.labels(result="bypass").inc(len(ids))
        return compute(ids)
    epoch = _stamp(_text(raw[0]), database_epoch)
    versions = [_text(v) for v in raw[1 : len(ids) + 1]]
    result: dict[int, ListingAvailability] = {}
    missing: list[int] = []
    stamps: dict[int, str] = {}
    for listing_id, version, entry in zip(ids, versions, raw[len(ids) + 1 :], strict=True):
        decoded = _decode(listing_id, entry) if entry is not None else None
        if decoded is not None and decoded[0] == epoch and decoded[1] == version:
            result[listing_id] = decoded[2]
        else:
            missing.append(listing_id)
            stamps[listing_id] = version
    if result:
        AVAILABILITY_CACHE.labels(result="hit").inc(len(result))
    if not missing:
        return result
    AVAILABILITY_CACHE.labels(result="miss").inc(len(missing))
    fresh = compute(missing)
    result.update(fresh)
    if fresh and time.monotonic() - started < entry_seconds():
        try:
            pipe = client.pipeline(transaction=False)
            for listing_id, value in fresh.items():
                pipe.set(_key("e", listing_id), _encode(epoch, stamps[listing_id], value), ex=entry_seconds())
            pipe.execute()
        except _redis_errors() as err:
            state.failed(err, "store")
    return result


def availability_invalidate(
    *, listing_ids: Iterable[int], also: Sequence[Callable[[Any], object]] = ()
) -> list[Any] | None:
    """Give these listings new versions now: every entry cached for them stops being served.

    ``also``: other commands for the same Redis, each queued by ``command(pipeline)``, sent in the same
    round trip; their answers are returned in order, or None when Redis was not reached (the
    invalidation was then made up by an epoch bump, and the caller sends its commands its own way).
    """
    ids = sorted(set(listing_ids))
    if not ids and not also:
        return []
    client = _client() if state.available() else None
    if client is None:
        if ids:
            state.failing = True  # make up for it with an epoch bump once Redis answers
            database_epoch_bump("redis_unavailable")  # and for the hosts that still read Redis: now
        return None
    try:
        state.succeeded(client)
        pipe = client.pipeline(transaction=False)
        for listing_id in ids:
            pipe.set(_key("v", listing_id), secrets.token_hex(8), ex=4 * entry_seconds())
        for command in also:
            command(pipe)
        answers = pipe.execute()
    except _redis_errors() as err:
        state.failed(err, "invalidate")
        if ids:
            database_epoch_bump("redis_failed")
        return None
    return list(answers[len(ids) :])


def availability_invalidate_all() -> None:
    """Bump the epoch: nothing cached before now is served again."""
    client = _client() if state.available() else None
    if client is None:
        state.failing = True
        database_epoch_bump("redis_unavailable")
        return
    try:
        client.set(_key("epoch"), secrets.token_hex(8))
        state.succeeded(client)
    except _redis_errors() as err:
        state.failed(err, "invalidate_all")
        database_epoch_bump("redis_failed")


def _after_stock_change(pairs: list[tuple[int, int]]) -> None:
    if not state.available():
        state.failing = True
        database_epoch_bump("redis_unavailable")
        return
    _listings_changed(listings_reached(pairs))


def _listings_changed(listing_ids: list[int]) -> None:
    """After commit: the cache forgets these listings, then open streams hear their new numbers."""
    availability_invalidate(listing_ids=listing_ids)
    stream_publish_after_commit(listing_ids=listing_ids)


def _configuration_changed() -> None:
    availability_invalidate_all()
    stream_publish_after_commit(listing_ids=None)


def _after_commit(callback: Callable[[], object]) -> None:
    """Run ``callback`` after the commit; if it fails (the database or Redis went away just after the
    commit), the bump is made up by an epoch bump on the next contact, and the writer's answer stands."""
    transaction.on_commit(partial(invalidation_guarded, callback))


def invalidation_guarded(callback: Callable[[], object]) -> object:
    """``callback()`` (an invalidation, after a commit); if it fails, an epoch bump instead (returns None)."""
    try:
        return callback()
    except Exception as err:  # the commit happened; the invalidation goes through PostgreSQL instead
        state.failing = True
        log.warning("availability_invalidation_deferred", error=f"{type(err).__name__}: {err}"[:300])
        database_epoch_bump("invalidation_failed")
        return None


def on_stock_changed(sender: object, *, pairs: Sequence[tuple[int, int]], reached: list[int] | None = None) -> None:
    """Sent inside the writer's transaction; the bump waits for its commit (and is dropped on rollback).
    ``reached``: the listings the move reaches, when the writer's statement found them already."""
    if reached is not None:
        _after_commit(partial(_listings_changed, list(reached)))
    else:
        _after_commit(partial(_after_stock_change, list(pairs)))


def on_configuration_changed(sender: object, **_kwargs: object) -> None:
    _after_commit(_configuration_changed)


# A listing's own bookkeeping (what was last pushed) does not move its quantity.
_LISTING_BOOKKEEPING = frozenset({"last_pushed_qty", "last_pushed_at"})


def on_listing_changed(
    sender: object, *, instance: Any, update_fields: Iterable[str] | None = None, **_: object
) -> None:
    if update_fields is not None and set(update_fields) <= _LISTING_BOOKKEEPING:
        return
    _after_commit(partial(_listings_changed, [instance.pk]))
