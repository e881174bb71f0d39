"""One reader per web process and channel: ``XREAD BLOCK`` on the channel's Redis Stream, events handed to
that process's open streams of the channel in memory. A watcher ends streams whose token stopped working.

Everything here runs on the process's event loop (uvicorn's); the database is reached only through
``sync_to_async`` (a token read again at most once per ``API_TOKEN_CACHE_SECONDS`` per token and process).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from typing import Any, TypeVar

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings

from apps.channels.stream import keys

log = structlog.get_logger("stockroom.stream")

T = TypeVar("T")
# What to undo when the request that opened a stream ends, however it ends. A client that goes away while
# Django is writing to it leaves the stream's generator to the garbage collector; the web's ASGI
# application (inventory_site/asgi.py) runs these when Django's handler returns, so a gone client's stream
# is forgotten at once.
request_cleanups: contextvars.ContextVar[list[Callable[[], None]] | None] = contextvars.ContextVar(
    "request_cleanups", default=None
)


def on_request_end(callback: Callable[[], None]) -> None:
    """Run ``callback`` when the current request ends (where the ASGI application keeps the list)."""
    cleanups = request_cleanups.get()
    if cleanups is not None:
        cleanups.append(callback)


# The streams' database work (a stream's first read, token checks) runs in these threads, whose
# connections persist as a synchronous worker's do (Django's per-request threads would open one each).
_database = ThreadPoolExecutor(max_workers=2, thread_name_prefix="stream-db")


def _with_connection(fn: Callable[..., T], *args: Any) -> T:
    from django.db import close_old_connections

    close_old_connections()  # these threads serve no request: a connection's age and health are checked here
    return fn(*args)


async def in_database(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in one of the streams' database threads."""
    return await sync_to_async(_with_connection, thread_sensitive=False, executor=_database)(fn, *args)


# A stream whose client reads slower than this many events behind is ended; it reconnects with its
# Last-Event-ID and catches up from Redis (or a snapshot).
BEHIND_LIMIT = 10_000
# A reader's XREAD returns at least this often (milliseconds) to renew its channel's open mark.
READ_BLOCK_MS = 5000
# Connections to Redis per web process for the streams: one per channel's reader (held in XREAD BLOCK),
# the rest shared by streams opening (their open mark, backlog and newest id).
REDIS_CONNECTIONS = 100

# KEYS: open marks (zset), first-open times (hash), last values, last tickets, events.
# ARGV: channel id, now, mark ttl. A channel opened after a gap forgets what was last appended (the
# publisher skipped it meanwhile) and appends a reset, so a reconnect from before the gap re-reads all.
_MARK_OPEN = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not score) or tonumber(score) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('DEL', KEYS[3], KEYS[4])
  redis.call('XADD', KEYS[5], '*', 'r', '1')
end
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
return redis.call('HGET', KEYS[2], ARGV[1])
"""


def stream_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    millis, _, seq = text.partition("-")
    return int(millis), int(seq or 0)


def sse_frame(event_id: str | None, data: str, event: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    if event:
        head += f"event: {event}\n"
    return f"{head}data: {data}\n\n".encode()


@dataclass(frozen=True)
class Event:
    id: str
    listing_id: int | None  # None: a reset (the subscriber re-reads everything)
    frame: bytes  # as written to every stream that follows it (formatted once, not once per stream)
    at: tuple[int, int]  # the id as a comparable pair


@dataclass(eq=False)
class Subscriber:
    channel_id: int
    listing_ids: frozenset[int] | None  # None: every listing of the channel
    token_hash: str
    buffer: list[Event] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ended: str | None = None
    # The hub's beat sets it when the stream wrote nothing for STREAM_HEARTBEAT_SECONDS (no timer per stream).
    heartbeat_due: bool = False
    written_at: float = field(default_factory=time.monotonic)

    def deliver(self, events: Iterable[Event]) -> None:
        """Events this subscriber follows (the hub picked them)."""
        if self.ended:
            return
        self.buffer.extend(events)
        if len(self.buffer) > BEHIND_LIMIT:
            self.end("behind")
        self.ready.set()

    def end(self, reason: str) -> None:
        self.ended = reason
        self.buffer.clear()
        self.ready.set()

    def take(self) -> list[Event]:
        events, self.buffer = self.buffer, []
        self.ready.clear()
        return events

    def wrote(self) -> None:
        self.written_at = time.monotonic()
        self.heartbeat_due = False

    def beat(self) -> None:
        self.heartbeat_due = True
        self.ready.set()


def _token_works(key_hash: str) -> bool:
    """The API's own rule (apps.core.authentication): remembered for API_TOKEN_CACHE_SECONDS, then read again."""
    from apps.core.authentication import remembered_tokens
    from apps.core.models import ApiToken

    token = remembered_tokens.get(key_hash)
    if token is None:
        read_at = time.monotonic()
        token = ApiToken.objects.select_related("user", "channel").filter(key_hash=key_hash).first()
        if token is None:
            return False
        remembered_tokens.put(key_hash, token, read_at)
    return not token.is_revoked and token.channel is not None and token.channel.is_active


class Hub:
    def __init__(self) -> None:
        self.redis: Any = None
        self.subscribers: dict[int, set[Subscriber]] = {}
        # Per channel: listing id -> the subscribers following it (None: those following every listing), so
        # an event costs the streams that want it, not every stream of the channel.
        self.following: dict[int, dict[int | None, set[Subscriber]]] = {}
        self.readers: dict[int, tuple[asyncio.Task[None], asyncio.Future[None]]] = {}
        self.watcher: asyncio.Task[None] | None = None
        self.beater: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self.redis is None or self.loop is not loop:
            import redis.asyncio

            # Reads wait up to READ_BLOCK_MS by design: the socket's timeout stays well above it. Hundreds of
            # streams opening at once (a storefront's visitors after a deploy) queue for a connection rather
            # than fail: the pool blocks, up to the socket's timeout, where the default one refuses.
            timeout = READ_BLOCK_MS / 1000 + 10
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                keys.redis_url(),
                max_connections=REDIS_CONNECTIONS,
                timeout=timeout,
                socket_connect_timeout=5,
                socket_timeout=timeout,
                socket_keepalive=True,
            )
            self.redis = redis.asyncio.Redis(connection_pool=pool)
            self.loop = loop
            self.subscribers.clear()
            self.following.clear()
            self.readers.clear()
            self.watcher = None
            self.beater = None
        return self.redis

    @property
    def open_streams(self) -> int:
        """Streams registered in this process (readable from another thread: the values are copied first)."""
        return sum(len(s) for s in list(self.subscribers.values()))

    async def mark_open(self, channel_id: int) -> float:
        """Tell publishers this channel has open streams; the answer is when the channel's mark began."""
        client = self.client()
        since = await client.eval(
            _MARK_OPEN,
            5,
            keys.key("open"),
            keys.key("since"),
            keys.key("last", channel_id),
            keys.key("seen", channel_id),
            keys.events(channel_id),
            channel_id,
            time.time(),
            keys.OPEN_TTL_SECONDS,
        )
        return float(since)

    async def subscribe(self, subscriber: Subscriber) -> None:
        """From now on every event appended to the channel's stream reaches ``subscriber``."""
        self.client()
        channel_id = subscriber.channel_id
        self.subscribers.setdefault(channel_id, set()).add(subscriber)
        on_request_end(partial(self.unsubscribe, subscriber))
        following = self.following.setdefault(channel_id, {})
        for listing_id in subscriber.listing_ids if subscriber.listing_ids is not None else (None,):
            following.setdefault(listing_id, set()).add(subscriber)
        if channel_id not in self.readers:
            started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._read(channel_id, started))
            self.readers[channel_id] = (task, started)
        await asyncio.shield(self.readers[channel_id][1])
        if self.watcher is None or self.watcher.done():
            self.watcher = asyncio.create_task(self._watch())
        if self.beater is None or self.beater.done():
            self.beater = asyncio.create_task(self._beat())

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscribers = self.subscribers.get(subscriber.channel_id)
        if subscribers is not None:
            subscribers.discard(subscriber)
        following = self.following.get(subscriber.channel_id, {})
        for listing_id in subscriber.listing_ids if subscriber.listing_ids is not None else (None,):
            followers = following.get(listing_id)
            if followers is not None:
                followers.discard(subscriber)
                if not followers:
                    del following[listing_id]

    def _fan_out(self, channel_id: int, events: list[Event]) -> None:
        following = self.following.get(channel_id, {})
        every = following.get(None, set())
        batches: dict[Subscriber, list[Event]] = {}
        for event in events:
            if event.listing_id is None:  # a reset reaches every stream of the channel
                targets: Iterable[Subscriber] = self.subscribers.get(channel_id, ())
            else:
                targets = chain(following.get(event.listing_id, ()), every)
            for subscriber in targets:
                batches.setdefault(subscriber, []).append(event)
        for subscriber, batch in batches.items():
            subscriber.deliver(batch)

    async def _read(self, channel_id: int, started: asyncio.Future[None]) -> None:
        client = self.client()
        key = keys.events(channel_id)
        try:
            newest = await client.xrevrange(key, count=1)
            last: bytes | str = newest[0][0] if newest else "0-0"
        except Exception as err:
            log.warning("stream_reader_failed", channel_id=channel_id, error=f"{type(err).__name__}: {err}"[:300])
            last = "$"
        started.set_result(None)
        marked = 0.0
        while self.subscribers.get(channel_id):
            try:
                if time.monotonic() - marked > keys.OPEN_REFRESH_SECONDS:
                    await self.mark_open(channel_id)
                    marked = time.monotonic()
                answer = await client.xread({key: last}, count=1000, block=READ_BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("stream_reader_failed", channel_id=channel_id, error=f"{type(err).__name__}: {err}"[:300])
                await asyncio.sleep(1.0)
                continue
            events: list[Event] = []
            for _key, entries in answer or []:
                for entry_id, fields in entries:
                    last = entry_id
                    events.append(entry_event(entry_id, fields))
            if events:
                self._fan_out(channel_id, events)
                # Under load, let the next changes gather: one read for all of them, and one write per
                # stream instead of one per change. Idle, the next change goes out as soon as it comes.
                await asyncio.sleep(keys.stream_setting("STREAM_BATCH_SECONDS"))
        self.readers.pop(channel_id, None)
        self.subscribers.pop(channel_id, None)
        self.following.pop(channel_id, None)

    async def _beat(self) -> None:
        """Streams that wrote nothing for STREAM_HEARTBEAT_SECONDS are told to send a heartbeat: one timer
        for the process, not one per stream and wait."""
        while any(self.subscribers.values()):
            heartbeat = keys.stream_setting("STREAM_HEARTBEAT_SECONDS")
            await asyncio.sleep(min(1.0, heartbeat / 3))
            quiet_since = time.monotonic() - heartbeat
            for subscribers in list(self.subscribers.values()):
                for subscriber in subscribers:
                    if subscriber.written_at <= quiet_since and not subscriber.heartbeat_due:
                        subscriber.beat()

    async def _watch(self) -> None:
        """Every open stream's token checked a few times per API_TOKEN_CACHE_SECONDS, once per distinct token."""
        tick = max(0.1, min(0.5, float(settings.API_TOKEN_CACHE_SECONDS) / 4))
        while any(self.subscribers.values()):
            await asyncio.sleep(tick)
            hashes = {s.token_hash for subs in self.subscribers.values() for s in subs}
            for key_hash in hashes:
                try:
                    works = await in_database(_token_works, key_hash)
                except Exception as err:  # the database away: streams go on; the API itself answers 503
                    log.warning("stream_token_check_failed", error=f"{type(err).__name__}: {err}"[:300])
                    continue
                if not works:
                    for subs in self.subscribers.values():
                        for subscriber in list(subs):
                            if subscriber.token_hash == key_hash:
                                subscriber.end("token_revoked")


def entry_event(entry_id: bytes | str, fields: dict[Any, Any]) -> Event:
    text_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    listing = fields.get(b"l", fields.get("l"))
    data = fields.get(b"d", fields.get("d"))
    if listing is None or data is None:
        return Event(text_id, None, b"", stream_id(text_id))
    data_text = data.decode() if isinstance(data, bytes) else data
    return Event(text_id, int(listing), sse_frame(text_id, data_text), stream_id(text_id))


hub = Hub()
