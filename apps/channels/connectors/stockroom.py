"""Stockroom's own push protocol, for a channel that speaks it itself.

A contract (docs/architecture.md, "Channel sync", and docs/push-protocol.md):

``POST {push_url}`` with ``{"channel": code, "updates": [{"sku", "available", "as_of"}]}`` and
``X-Stockroom-Signature: sha256=<hex HMAC-SHA256 of the body with the channel's secret>``; 2xx
accepts the whole batch, 429 + ``Retry-After`` throttles, anything else fails it (retried with
backoff). The read-back is ``GET {push_url}?sku=A&sku=B`` answering ``{"results": [{"sku",
"available"}]}``, signed over the query string. Orders come in through the API, not from here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Sequence
from datetime import datetime

import requests
from django.utils import timezone
from rest_framework import serializers

from apps.channels.conf import sync_setting
from apps.channels.connectors.base import (
    ChannelRef,
    Connector,
    ConnectorError,
    ConnectorThrottled,
    PushResult,
    QuantityUpdate,
    retry_after_seconds,
    transport_failure,
)
from apps.core.outbound import outbound_session, status_text

SIGNATURE_HEADER = "X-Stockroom-Signature"


def sign(body: bytes, secret: str) -> str:
    """The push signature header value: ``sha256=<hex HMAC-SHA256 of the exact body bytes>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def push_body(*, channel_code: str, updates: list[tuple[str, int]], as_of: datetime) -> bytes:
    stamp = as_of.isoformat()
    payload = {
        "channel": channel_code,
        "updates": [{"sku": sku, "available": available, "as_of": stamp} for sku, available in updates],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


_local = threading.local()


def _session() -> requests.Session:
    """One keep-alive session per thread (the sync worker pushes from a thread pool)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = outbound_session()
    return session


class NoSettings(serializers.Serializer):
    """The push protocol keeps its endpoint and secret on the channel itself (push_url, secret)."""


class StockroomConnector(Connector):
    name = "stockroom"
    label = "Stockroom push protocol"
    settings_serializer = NoSettings
    credentials_serializer = NoSettings
    max_batch = 10_000  # the channel's own batch_size decides

    def configured(self, channel: ChannelRef) -> bool:
        return bool(channel.push_url)

    def push(self, channel: ChannelRef, updates: Sequence[QuantityUpdate]) -> PushResult:
        as_of = timezone.now()
        body = push_body(channel_code=channel.code, updates=[(u.sku, u.available) for u in updates], as_of=as_of)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, channel.secret)}
        ids = [u.listing_id for u in updates]
        try:
            response = _session().post(
                channel.push_url, data=body, headers=headers, timeout=float(sync_setting("SYNC_HTTP_TIMEOUT_S"))
            )
        except requests.RequestException as err:
            return PushResult(failed=dict.fromkeys(ids, str(transport_failure(err, "push failed"))), requests=1)
        if 200 <= response.status_code < 300:
            return PushResult(accepted=ids, requests=1)
        if response.status_code == 429:
            return PushResult(
                throttled_for=retry_after_seconds(response.headers.get("Retry-After"), default=1.0), requests=1
            )
        error = f"the endpoint answered {status_text(response.status_code)}"
        return PushResult(failed=dict.fromkeys(ids, error), requests=1, retry_after=response.headers.get("Retry-After"))

    def read_back(self, channel: ChannelRef, listings: Sequence[QuantityUpdate]) -> dict[int, int | None]:
        if not listings:
            return {}
        shown = self._get(channel, [u.sku for u in listings])
        return {u.listing_id: shown.get(u.sku) for u in listings}

    def test_connection(self, channel: ChannelRef) -> str:
        if not channel.push_url:
            raise ConnectorError("No push URL: set push_url to the channel's endpoint.")
        self._get(channel, [])
        return f"{channel.push_url} answers signed reads."

    def _get(self, channel: ChannelRef, skus: list[str]) -> dict[str, int | None]:
        request = requests.Request("GET", channel.push_url, params=[("sku", sku) for sku in skus]).prepare()
        query = (request.url or "").partition("?")[2].encode()
        request.headers[SIGNATURE_HEADER] = sign(query, channel.secret)
        try:
            response = _session().send(request, timeout=float(sync_setting("SYNC_HTTP_TIMEOUT_S")))
        except requests.RequestException as err:
            raise transport_failure(err, "the endpoint cannot be reached") from err
        if response.status_code == 429:
            raise ConnectorThrottled(wait_s=retry_after_seconds(response.headers.get("Retry-After"), default=1.0))
        if response.status_code != 200:
            raise ConnectorError(f"the endpoint answered {status_text(response.status_code)}")
        try:
            results = response.json()["results"]
            return {str(r["sku"]): (None if r.get("available") is None else int(r["available"])) for r in results}
        except (ValueError, KeyError, TypeError) as err:
            raise ConnectorError("unreadable answer: not JSON with a list of results") from err
