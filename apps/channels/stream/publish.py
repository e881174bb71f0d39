"""The publishing side: listings' new numbers appended to their channel's Redis Stream after commit.

Ordering: two writers commit one after the other and each reads the listings after its own commit; the
first writer's read may start before the second commit and reach Redis last. So every read draws a
ticket (``INCR``) *before* it queries PostgreSQL, and Redis applies a listing's value only when its
ticket is newer than the last one applied for that listing (in one script, atomically). A read that drew
a newer ticket started after the other's ticket, which was drawn after that writer's commit: its value
is at least as fresh. A value equal to the last appended one is not appended again.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import structlog
from django.utils import timezone

from apps.channels.freshness import listings_state
from apps.channels.models import Listing
from apps.channels.selectors import listings_availability
from apps.channels.stream import keys

log = structlog.get_logger("stockroom.stream")

# KEYS: events stream, last values, last tickets. ARGV: ticket, maxlen, then (listing id, value, data)*.
_APPEND = """
local ticket = tonumber(ARGV[1])
local appended = 0
for i = 3, #ARGV, 3 do
  local listing = ARGV[i]
  local seen = tonumber(redis.call('HGET', KEYS[3], listing) or '-1')
  if ticket > seen then
    redis.call('HSET', KEYS[3], listing, ticket)
    if redis.call('HGET', KEYS[2], listing) ~= ARGV[i + 1] then
      redis.call('HSET', KEYS[2], listing, ARGV[i + 1])
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'l', listing, 'd', ARGV[i + 2])
      appended = appended + 1
    end
  end
end
return appended
"""


class _OpenChannels:
    """Which channels have open streams, remembered for ``OPEN_CACHE_SECONDS`` per process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.read_at = -1e9
        self.ids: frozenset[int] = frozenset()

    def get(self, client: Any) -> frozenset[int]:
        now = time.monotonic()
        if now - self.read_at < keys.OPEN_CACHE_SECONDS:
            return self.ids
        members = client.zrangebyscore(keys.key("open"), time.time(), "+inf")
        with self.lock:
            self.ids = frozenset(int(m) for m in members)
            self.read_at = now
        return self.ids

    def forget(self) -> None:
        with self.lock:
            self.read_at = -1e9


open_channels = _OpenChannels()


def event_data(*, sku: str, available: int, as_of: str, state: str) -> str:
    return json.dumps({"sku": sku, "available": available, "as_of": as_of, "state": state}, separators=(",", ":"))


def listings_publish(*, client: Any, listing_ids: Iterable[int] | None = None, channel_ids: Sequence[int] = ()) -> int:
    """Append the current number of these listings (or of every listing of ``channel_ids``) to their
    channels' streams where it changed. Only channels with open streams are read. Returns events appended."""
    opened = open_channels.get(client)
    channels = sorted(opened & set(channel_ids)) if channel_ids else sorted(opened)
    if not channels:
        return 0
    ticket = client.incr(keys.key("ticket"))  # before PostgreSQL is read, never after
    as_of = timezone.now().isoformat().replace("+00:00", "Z")  # the numbers are at least this fresh
    if listing_ids is None:
        ids = list(Listing.objects.filter(channel_id__in=channels).order_by("pk").values_list("pk", flat=True))
    else:
        ids = sorted(set(listing_ids))
    states = listings_state(ids, channel_ids=channels)
    if not states:
        return 0
    numbers = listings_availability(list(states))
    by_channel: dict[int, list[str]] = {}
    for listing_id, (channel_id, state) in states.items():
        row = numbers.get(listing_id)
        if row is None:
            continue
        data = event_data(sku=row.channel_sku, available=row.available, as_of=as_of, state=state)
        by_channel.setdefault(channel_id, []).extend([str(listing_id), f"{row.available}|{state}", data])
    backlog = int(keys.stream_setting("STREAM_BACKLOG"))
    appended = 0
    script = client.register_script(_APPEND)
    pipe = client.pipeline(transaction=False)
    for channel_id, args in by_channel.items():
        script(
            keys=[keys.events(channel_id), keys.key("last", channel_id), keys.key("seen", channel_id)],
            args=[ticket, backlog, *args],
            client=pipe,
        )
    for count in pipe.execute():
        appended += int(count)
    return appended


def _client() -> Any | None:
    """The raw Redis client behind the default cache (None when the cache is not Redis)."""
    from django.core.cache import caches

    client = getattr(caches["default"], "client", None)
    if client is None or not hasattr(client, "get_client"):
        return None
    return client.get_client(write=True)


class _Publisher:
    """One thread per process publishes what commits hand it: a writer's request does not wait for the
    reads, and changes that arrive while a publish runs, or within ``STREAM_BATCH_SECONDS`` of the last one,
    go out together in the next one (one read for many orders under load). The thread gives its database
    connection back when idle."""

    IDLE_CLOSE_SECONDS = 2.0

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.pending: set[int] = set()
        self.everything = False
        self.busy = False
        self.published_at = -1e9
        self.release_asked = False
        self.thread: threading.Thread | None = None
        self.pid = 0

    def submit(self, listing_ids: Sequence[int] | None) -> None:
        with self.changed:
            if listing_ids is None:
                self.everything = True
            else:
                self.pending.update(listing_ids)
            if self.thread is None or not self.thread.is_alive() or self.pid != os.getpid():
                self.pid = os.getpid()  # a forked worker starts its own thread
                self.thread = threading.Thread(target=self._run, name="stream-publisher", daemon=True)
                self.thread.start()
            self.changed.notify_all()

    def _run(self) -> None:
        from django.db import close_old_connections, connection

        while True:
            with self.changed:
                while not self.pending and not self.everything:
                    if self.release_asked or not self.changed.wait(timeout=self.IDLE_CLOSE_SECONDS):
                        connection.close()
                        self.release_asked = False
                        self.changed.notify_all()
                        self.changed.wait()
                # Under load, at most one publish per batch window: what commits meanwhile joins this one.
                gathered_at = self.published_at + keys.stream_setting("STREAM_BATCH_SECONDS")
                while (left := gathered_at - time.monotonic()) > 0:
                    self.changed.wait(left)
                ids = None if self.everything else sorted(self.pending)
                self.pending, self.everything, self.busy = set(), False, True
            try:
                close_old_connections()
                client = _client()
                if client is not None:
                    listings_publish(client=client, listing_ids=ids)
            except Exception as err:  # Redis or PostgreSQL gone after the commit: the refresh job catches up
                log.warning("stream_publish_failed", error=f"{type(err).__name__}: {err}"[:300])
            finally:
                with self.changed:
                    self.published_at = time.monotonic()
                    self.busy = False
                    self.changed.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything handed over is published (tests, benchmarks)."""
        with self.changed:
            return self.changed.wait_for(lambda: not (self.pending or self.everything or self.busy), timeout)

    def release(self, timeout: float = 10.0) -> None:
        """Publish what is pending, then close the thread's database connection (a test database can go)."""
        if self.thread is None or not self.thread.is_alive():
            return
        self.flush(timeout)
        with self.changed:
            self.release_asked = True
            self.changed.notify_all()
            self.changed.wait_for(lambda: not self.release_asked, timeout)


publisher = _Publisher()


def stream_publish_after_commit(*, listing_ids: Sequence[int] | None) -> None:
    """Called after a commit that may have moved these listings (None: any listing). Nothing happens unless
    some channel has open streams; then the process's publisher thread takes them (``_Publisher``). A
    failure is logged and left to the refresh job (``streams_refresh``); the writer's answer stands."""
    client = _client()
    if client is None:
        return
    try:
        if not open_channels.get(client):
            return
    except Exception as err:  # Redis gone: no stream can be fed now; the refresh job catches up
        log.warning("stream_publish_failed", error=f"{type(err).__name__}: {err}"[:300])
        return
    publisher.submit(None if listing_ids is None else list(listing_ids))


def streams_refresh() -> int:
    """Every listing of every channel with open streams read again; only changes are appended."""
    client = _client()
    if client is None:
        return 0
    open_channels.forget()
    return listings_publish(client=client, listing_ids=None)
