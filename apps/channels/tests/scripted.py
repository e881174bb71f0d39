"""A small platform connector for tests: an in-memory platform with compare-and-set quantities,
scriptable failures, signed webhooks and paged orders. Registered by monkeypatching ``CONNECTORS``
(``use_scripted``), so the real engine, intake and admin run against it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from rest_framework import serializers

from apps.channels import connectors
from apps.channels.connectors.base import (
    ChannelRef,
    Connector,
    ConnectorError,
    OrderLine,
    OrdersPage,
    PlatformOrder,
    PushResult,
    QuantityUpdate,
    Webhook,
)

SIGNATURE_HEADER = "X-Scripted-Hmac"
DELIVERY_HEADER = "X-Scripted-Delivery"


class ScriptedSettings(serializers.Serializer):
    shop_url = serializers.URLField(help_text="The shop's base URL.")
    location_id = serializers.CharField(max_length=100, help_text="Where quantities are set.")
    batch_limit = serializers.IntegerField(min_value=1, max_value=250, required=False, default=50)


class ScriptedCredentials(serializers.Serializer):
    access_token = serializers.CharField(max_length=200)
    webhook_secret = serializers.CharField(max_length=200, required=False)


@dataclass
class Platform:
    """What the platform shows, by external id, and what it was asked."""

    shown: dict[str, int] = field(default_factory=dict)
    pushes: list[list[QuantityUpdate]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # external id -> why the platform refuses it
    throttle_next: list[float] = field(default_factory=list)  # seconds, one per coming push
    pause_for: float | None = None
    down: str | None = None  # the whole platform fails with this message
    crash: bool = False  # the connector has a bug
    forget: set[str] = field(default_factory=set)  # updates the platform answers nothing about
    pages: list[OrdersPage] = field(default_factory=list)
    polls: list[tuple[datetime | None, str | None]] = field(default_factory=list)
    orders: dict[str, PlatformOrder] = field(default_factory=dict)  # what ``orders_get`` answers, by order id
    deleted: set[str] = field(default_factory=set)  # orders the platform no longer has
    gets: list[list[str]] = field(default_factory=list)  # the ids of each ``orders_get`` call
    gets_unsupported: bool = False  # the connector has no ``orders_get`` (NotImplementedError)
    on_push: Callable[[], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class ScriptedConnector(Connector):
    name = "scripted"
    label = "Scripted platform"
    settings_serializer = ScriptedSettings
    credentials_serializer = ScriptedCredentials
    receives_orders = True
    polls_orders = True
    max_batch = 3
    orders_get_batch = 2

    platform = Platform()  # shared by every instance (the connector may be registered under several names)

    def push(self, channel: ChannelRef, updates: Sequence[QuantityUpdate]) -> PushResult:
        p = self.platform
        with p.lock:
            p.pushes.append(list(updates))
            if p.on_push is not None:
                p.on_push()
            if p.crash:
                raise RuntimeError("connector bug")
            if p.down:
                raise ConnectorError(p.down, retry_after="1")
            if p.throttle_next:
                return PushResult(throttled_for=p.throttle_next.pop(0), requests=1)
            result = PushResult(requests=1, pause_for=p.pause_for)
            for update in updates:
                key = update.external_id
                if key in p.forget:
                    continue
                if key in p.refuse:
                    result.failed[update.listing_id] = p.refuse[key]
                elif update.last_pushed is not None and p.shown.get(key) != update.last_pushed:
                    result.mismatched[update.listing_id] = p.shown.get(key)
                else:
                    p.shown[key] = update.available
                    result.accepted.append(update.listing_id)
            return result

    def read_back(self, channel: ChannelRef, listings: Sequence[QuantityUpdate]) -> dict[int, int | None]:
        with self.platform.lock:
            return {u.listing_id: self.platform.shown.get(u.external_id) for u in listings}

    def orders_since(self, channel: ChannelRef, since: datetime | None, cursor: str | None = None) -> OrdersPage:
        p = self.platform
        p.polls.append((since, cursor))
        if p.down:
            raise ConnectorError(p.down)
        index = int(cursor or 0)
        if index >= len(p.pages):
            return OrdersPage(orders=[], complete_until=None)
        return p.pages[index]

    def orders_get(self, channel: ChannelRef, external_ids: Sequence[str]) -> list[PlatformOrder]:
        p = self.platform
        if p.gets_unsupported:
            raise NotImplementedError
        assert len(external_ids) <= self.orders_get_batch, "more ids than orders_get_batch in one call"
        with p.lock:
            p.gets.append(list(external_ids))
            if p.down:
                raise ConnectorError(p.down)
            found = []
            for external_id in external_ids:
                if external_id in p.deleted:
                    found.append(
                        PlatformOrder(external_id=external_id, status=PlatformOrder.Status.CANCELLED, lines=())
                    )
                elif external_id in p.orders:
                    found.append(p.orders[external_id])
            return found

    def webhook_verify(self, channel: ChannelRef, headers: Mapping[str, str], body: bytes) -> Webhook | None:
        secret = str(channel.credentials.get("webhook_secret", ""))
        given = headers.get(SIGNATURE_HEADER, "")
        if not secret or not hmac.compare_digest(sign(body, secret), given):
            return None
        try:
            data = json.loads(body)
            orders = [order_of(o) for o in data["orders"]]
        except (ValueError, KeyError, TypeError) as err:
            raise ConnectorError(f"unreadable body: {err}") from err
        return Webhook(delivery_id=headers.get(DELIVERY_HEADER, ""), topic=str(data.get("topic", "")), orders=orders)

    def test_connection(self, channel: ChannelRef) -> str:
        if channel.credentials.get("access_token") == "wrong":
            raise ConnectorError("401 Unauthorized: the access token was refused")
        return f"Connected to {channel.settings['shop_url']}, location {channel.settings['location_id']}."


def sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def order_of(data: Mapping[str, Any]) -> PlatformOrder:
    return PlatformOrder(
        external_id=str(data["id"]),
        status=str(data["status"]),
        lines=tuple(
            OrderLine(
                sku=str(line.get("sku", "")),
                quantity=int(line["quantity"]),
                fulfilled=int(line.get("fulfilled", 0)),
                external_id=str(line.get("external_id", "")),
            )
            for line in data["lines"]
        ),
        number=str(data.get("number", "")),
        updated_at=datetime.fromisoformat(data["updated_at"]) if data.get("updated_at") else None,
    )


PATH = "apps.channels.tests.scripted.ScriptedConnector"


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ScriptedConnector]]:
    """Register the scripted connector as ``scripted`` (and under more names if asked: ``scripted("shopify")``);
    every name shares one fresh platform. The registry is as before once the test ends."""

    def register(*names: str) -> ScriptedConnector:
        ScriptedConnector.platform = Platform()
        for name in ("scripted", *names):
            monkeypatch.setitem(connectors.CONNECTORS, name, PATH)
        connectors.connector_named.cache_clear()
        connector = connectors.connector_named("scripted")
        assert isinstance(connector, ScriptedConnector)
        return connector

    yield register
    connectors.connector_named.cache_clear()
