"""``GET /api/v1/availability/stream/``: Server-Sent Events of a channel's availability (docs/stream.md).

An async view: an open stream holds no thread, only a coroutine waiting on its hub. Its prelude (the
token, the SKUs) runs once in a thread, through the API's own authentication; errors are the API's JSON.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from redis.exceptions import RedisError
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.channels.stream import keys
from apps.channels.stream.hub import Event, Subscriber, hub, in_database, sse_frame, stream_id
from apps.core.api.schema import error_response
from apps.core.authentication import ApiTokenAuthentication, ChannelPrincipal
from apps.core.errors import api_exception_handler
from apps.core.permissions import IsChannelToken

RETRY_MS = 2000
log = structlog.get_logger("stockroom.stream")


@dataclass(frozen=True)
class Opened:
    channel_id: int
    listing_ids: frozenset[int] | None
    token_hash: str


def _open(request: HttpRequest) -> Opened:
    """Who asks and for what; raises the API's exceptions."""
    drf_request = Request(request)
    auth = ApiTokenAuthentication()
    answer = auth.authenticate(drf_request)
    if answer is None:
        raise exceptions.NotAuthenticated()
    principal, token = answer
    if not isinstance(principal, ChannelPrincipal):
        raise exceptions.PermissionDenied(IsChannelToken.message)
    channel = principal.channel
    skus = list(dict.fromkeys(request.GET.getlist("sku")))
    limit = int(keys.stream_setting("STREAM_MAX_SKUS"))
    if len(skus) > limit:
        raise exceptions.ValidationError(
            {"sku": [f"At most {limit} SKUs per stream; open the stream without `sku` for all of the channel's."]}
        )
    if any(not sku or len(sku) > 100 for sku in skus):
        raise exceptions.ValidationError({"sku": ["A SKU is 1 to 100 characters."]})
    from apps.channels.models import Listing

    if not skus:
        return Opened(channel.pk, None, token.key_hash)
    ids = dict(Listing.objects.filter(channel=channel, channel_sku__in=skus).values_list("channel_sku", "id"))
    if unknown := [sku for sku in skus if sku not in ids]:
        raise exceptions.ValidationError({"sku": [f"Not a SKU of this channel: {', '.join(unknown[:20])}."]})
    return Opened(channel.pk, frozenset(ids.values()), token.key_hash)


def _refusal(exc: Exception) -> HttpResponse:
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        exc.auth_header = ApiTokenAuthentication.keyword  # type: ignore[union-attr]  # DRF reads it if set
    response = api_exception_handler(exc, {})
    if response is None:
        raise exc
    answer = JsonResponse(response.data, status=response.status_code)
    for header in ("WWW-Authenticate", "Retry-After"):
        if header in response:
            answer[header] = response[header]
    return answer


def _snapshot(opened: Opened) -> list[str]:
    """The current number and state of every listing the stream follows."""
    from django.utils import timezone

    from apps.channels.freshness import listings_state
    from apps.channels.models import Listing
    from apps.channels.selectors import listings_availability
    from apps.channels.stream.publish import event_data

    if opened.listing_ids is None:
        ids = list(
            Listing.objects.filter(channel_id=opened.channel_id, is_active=True)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    else:
        ids = sorted(opened.listing_ids)
    states = listings_state(ids)
    numbers = listings_availability(ids)
    as_of = timezone.now().isoformat().replace("+00:00", "Z")
    return [
        event_data(sku=row.channel_sku, available=row.available, as_of=as_of, state=states[row.listing_id].state)
        for listing_id in ids
        if (row := numbers.get(listing_id)) is not None and listing_id in states
    ]


async def _newest_id(key: str) -> str:
    newest = await hub.client().xrevrange(key, count=1)
    return newest[0][0].decode() if newest else "0-0"


async def _backlog(key: str, after: str) -> list[Event] | None:
    """Events after ``after``, or None when some were trimmed already (or ``after`` is from another life)."""
    from apps.channels.stream.hub import entry_event

    client = hub.client()
    oldest = await client.xrange(key, count=1)
    newest = await client.xrevrange(key, count=1)
    if not oldest or stream_id(after) > stream_id(newest[0][0]) or stream_id(after) < stream_id(oldest[0][0]):
        return None
    events: list[Event] = []
    start = after
    while True:
        page = await client.xrange(key, min=f"({start}", max="+", count=1000)
        events.extend(entry_event(entry_id, fields) for entry_id, fields in page)
        if len(page) < 1000:
            return events
        start = events[-1].id


async def _events(opened: Opened, subscriber: Subscriber, last_event_id: str | None) -> AsyncIterator[bytes]:
    key = keys.events(opened.channel_id)
    ends_at = time.monotonic() + keys.stream_setting("STREAM_MAX_SECONDS")
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        async for chunk in _follow(opened, subscriber, last_event_id, key):
            yield chunk
            subscriber.wrote()
            if time.monotonic() >= ends_at:
                # Ended without `end`: the client reconnects with its Last-Event-ID and misses nothing.
                return
    except (RedisError, OSError) as err:
        # Redis away: end the answer without `end`, so the client reconnects with its Last-Event-ID.
        log.warning("stream_interrupted", channel_id=opened.channel_id, error=f"{type(err).__name__}: {err}"[:300])
    finally:
        hub.unsubscribe(subscriber)


def _gone_if_cancelled() -> None:
    """End the stream if its request was cancelled and a library it awaited swallowed that.

    Django cancels a stream's task once, when its client goes. On Python 3.11 ``asyncio.wait_for``, which
    redis-py's command send runs under when the client has a socket timeout (the hub's has), returns the
    send's result instead of raising when the cancellation arrives just as the send completes: the task
    counts the cancellation (``Task.cancelling()``) but runs on, and Django, which cancels only once, would
    wait for a stream that writes to nobody until ``STREAM_MAX_SECONDS``. Checked before every wait.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _follow(opened: Opened, subscriber: Subscriber, last_event_id: str | None, key: str) -> AsyncIterator[bytes]:
    await hub.subscribe(subscriber)
    since = await hub.mark_open(opened.channel_id)
    # A channel's first stream: publishers learn of it within OPEN_CACHE_SECONDS; read after that.
    if (wait := since + keys.OPEN_CACHE_SECONDS - time.time()) > 0:
        await asyncio.sleep(wait)
    sent = "0-0"
    missed = await _backlog(key, last_event_id) if last_event_id else None
    if missed is None or any(e.listing_id is None for e in missed):
        sent = await _newest_id(key)
        yield b"".join(sse_frame(sent, data) for data in await in_database(_snapshot, opened))
        missed = await _backlog(key, sent) or []
    frames = []
    for event in missed:
        if event.listing_id is not None and (opened.listing_ids is None or event.listing_id in opened.listing_ids):
            frames.append(event.frame)
        sent = event.id
    if frames:
        yield b"".join(frames)
    sent_at = stream_id(sent)
    while True:
        _gone_if_cancelled()
        await subscriber.ready.wait()  # the hub's reader (events) or its beat (a heartbeat is due) wakes it
        if subscriber.ended:
            yield sse_frame(None, f'{{"code":"{subscriber.ended}"}}', event="end")
            return
        frames = []  # everything that arrived since the last wake-up goes out in one write
        for event in subscriber.take():
            if event.at <= sent_at:
                continue
            if event.listing_id is None:  # the channel's stream began anew: re-read everything
                snapshot_id = await _newest_id(key)
                frames.extend(sse_frame(snapshot_id, data) for data in await in_database(_snapshot, opened))
                sent_at = stream_id(snapshot_id)
                continue
            frames.append(event.frame)
            sent_at = event.at
        if frames:
            yield b"".join(frames)
        elif subscriber.heartbeat_due:
            yield b": heartbeat\n\n"


async def availability_stream(request: HttpRequest) -> HttpResponseBase:
    if not isinstance(request, ASGIRequest):
        # A synchronous server would hold a thread per stream, and Django would buffer the endless answer.
        body = {
            "code": "stream_unavailable",
            "detail": "This server cannot hold streams: serve the web with inventory_site.asgi (the Procfile's).",
            "errors": [],
        }
        return JsonResponse(body, status=503)
    if request.method != "GET":
        return _refusal(exceptions.MethodNotAllowed(request.method or ""))
    last_event_id = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or None
    if last_event_id is not None:
        try:
            stream_id(last_event_id)
        except ValueError:
            return _refusal(exceptions.ValidationError({"Last-Event-ID": ["Not an event id of this stream."]}))
    try:
        opened = await in_database(_open, request)
    except Exception as exc:
        return _refusal(exc)
    subscriber = Subscriber(opened.channel_id, opened.listing_ids, opened.token_hash)
    response = StreamingHttpResponse(_events(opened, subscriber, last_event_id), content_type="text/event-stream")
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # a buffering proxy in front would hold events back
    return response


class AvailabilityStreamView(APIView):
    """The endpoint as the schema tells it; requests are served by the async ``availability_stream``."""

    permission_classes = [IsChannelToken]

    @extend_schema(
        operation_id="availability_stream",
        summary="This channel's availability, live (Server-Sent Events)",
        description=(
            "A `text/event-stream` that stays open. First one event per listing followed (its current number), "
            "then one event per change of a listing's `available` or `state`: "
            '`id: <event id>` and `data: {"sku", "available", "as_of", "state"}`. `state` is `ok`, `updating` '
            "(a change is queued and not settled, or the channel's orders are not all imported) or `stale` (a "
            "supplier's stock feeding it is past its max age, or the channel showed another number at the last "
            "reconciliation). A comment line `: heartbeat` every 15 s. Reconnect with the `Last-Event-ID` header "
            "(browsers' EventSource does it): the events missed follow, or the current numbers when more was "
            "missed than the channel keeps. A token revoked (or its channel deactivated) ends the stream with "
            '`event: end` and `data: {"code": "token_revoked"}` within `API_TOKEN_CACHE_SECONDS`. Without '
            "`sku` the stream follows every listing of the channel. An unknown SKU, more SKUs than allowed "
            "(100 by default) or a NUL byte is a 400 before the stream opens. See docs/stream.md."
        ),
        parameters=[
            OpenApiParameter(
                "sku",
                OpenApiTypes.STR,
                many=True,
                required=False,
                explode=True,
                description="A channel SKU to follow; repeat for several. None: every listing of the channel.",
            ),
            OpenApiParameter(
                "Last-Event-ID",
                OpenApiTypes.STR,
                location=OpenApiParameter.HEADER,
                required=False,
                description="The id of the last event received; the stream resumes after it.",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                response=OpenApiTypes.STR,
                description="Server-Sent Events.",
                examples=[
                    OpenApiExample(
                        "A sale",
                        value='id: 1733580000000-0\ndata: {"sku": "HOOD-M", "available": 4, '
                        '"as_of": "2026-12-07T14:00:00.120Z", "state": "ok"}\n\n',
                    )
                ],
            ),
            400: error_response(
                "Refused before the stream opens: an unknown SKU (named in `errors`), more SKUs than allowed, a SKU "
                "over 100 characters (`invalid`), a NUL byte (`invalid_text`), a malformed Last-Event-ID."
            ),
        },
    )
    def get(self, request: Request) -> Any:  # pragma: no cover - the async view serves it
        raise exceptions.MethodNotAllowed("GET")

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        """The async view, carrying this class for the schema generator (as DRF's own views do)."""

        async def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            return await availability_stream(request)

        view.cls = cls  # type: ignore[attr-defined]
        view.initkwargs = initkwargs  # type: ignore[attr-defined]
        view.csrf_exempt = True  # type: ignore[attr-defined]
        return view
