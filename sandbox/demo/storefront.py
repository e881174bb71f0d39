"""A small storefront beside the demo (`make run`: http://127.0.0.1:8000/demo/storefront/): the webshop's products
with their numbers kept live from Stockroom's availability stream (docs/stream.md).

It is built as a real storefront should be: the shopper's browser never sees the channel token. The page opens
an EventSource on the storefront's own server (``stream/`` below), which holds the token and relays Stockroom's
``/api/v1/availability/stream/`` byte for byte, the browser's Last-Event-ID included.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render

from apps.channels.models import Channel, Listing
from apps.channels.stream.hub import on_request_end
from apps.core.models import ApiToken, hash_token
from apps.core.services import token_create
from sandbox.demo.platforms import WEBSHOP

TOKEN_NAME = "demo storefront"


def _channel_code(request: HttpRequest) -> str:
    return request.GET.get("channel") or WEBSHOP


def _storefront_token(code: str) -> str | None:
    """The storefront server's channel token: kept in Redis for the demo, made anew when missing or revoked."""
    cache = caches["default"]
    key = f"demo:storefront-token:{code}"
    raw = cache.get(key)
    if raw and ApiToken.objects.filter(key_hash=hash_token(raw), revoked_at__isnull=True).exists():
        return str(raw)
    if not Channel.objects.filter(code=code).exists():
        return None
    raw = token_create(channel_code=code, name=TOKEN_NAME)
    cache.set(key, raw, timeout=None)
    return raw


def storefront_page(request: HttpRequest) -> HttpResponse:
    code = _channel_code(request)
    channel = Channel.objects.filter(code=code).first()
    listings = (
        list(Listing.objects.filter(channel=channel, is_active=True).select_related("product").order_by("channel_sku"))
        if channel
        else []
    )
    return render(request, "demo/storefront.html", {"channel": channel, "code": code, "listings": listings})


async def _relay(host: str, port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes, AsyncIterator[bytes]]:
    reader, writer = await asyncio.open_connection(host, port)
    on_request_end(writer.close)  # the shopper gone: the upstream stream ends too
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    # HTTP/1.0: the answer is the stream's bytes until it ends, no chunk framing to undo.
    writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n{head}\r\n".encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    while (await reader.readline()) not in (b"\r\n", b""):
        pass

    async def body() -> AsyncIterator[bytes]:
        try:
            while chunk := await reader.read(65536):
                yield chunk
        finally:
            writer.close()

    if status != 200:
        refused = await reader.read()
        writer.close()
        return status, refused, body()
    return status, b"", body()


async def storefront_stream(request: HttpRequest) -> HttpResponseBase:
    code = _channel_code(request)
    token = await sync_to_async(_storefront_token)(code)
    if token is None:
        return JsonResponse({"detail": f"No channel {code}."}, status=404)
    headers = {"Authorization": f"Token {token}", "Accept": "text/event-stream"}
    if last := request.headers.get("Last-Event-ID"):
        headers["Last-Event-ID"] = last
    host, port = request.META.get("SERVER_NAME") or "127.0.0.1", int(request.META.get("SERVER_PORT") or 8000)
    status, refused, body = await _relay(host, port, "/api/v1/availability/stream/", headers)
    if status != 200:
        return HttpResponse(refused, status=status, content_type="application/json")
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-store"
    return response
