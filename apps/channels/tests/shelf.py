"""An in-memory platform for going-live tests: the scripted platform (``scripted.py``) with a catalog, locations
and order webhook subscriptions. Registered as ``shelf`` by the ``shelf`` fixture; no HTTP.

The quantity at ``MAIN`` is the scripted platform's ``shown`` (what pushes set, compare-and-set); other
locations keep what the variant was given.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from apps.channels import connectors
from apps.channels.connectors.base import (
    Catalog,
    CatalogEntry,
    ChannelRef,
    ConnectorError,
    PlatformLocation,
    Progress,
    WebhookSubscription,
)
from apps.channels.tests.scripted import Platform, ScriptedConnector

MAIN = "gid://shelf/Location/1"
BACK = "gid://shelf/Location/2"


@dataclass
class Variant:
    sku: str
    external_id: str
    title: str = ""
    tracked: bool = True
    platform_managed: bool = False
    elsewhere: dict[str, int] = field(default_factory=dict)  # quantities at other locations than MAIN
    at_main: bool = True  # stocked at MAIN


@dataclass
class Shelf:
    variants: list[Variant] = field(default_factory=list)
    locations: list[PlatformLocation] = field(
        default_factory=lambda: [PlatformLocation(MAIN, "Main warehouse"), PlatformLocation(BACK, "Back room", False)]
    )
    subscriptions: dict[str, WebhookSubscription] = field(default_factory=dict)
    subscribe_calls: int = 0
    catalog_reads: int = 0
    down: str | None = None
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))


class ShelfConnector(ScriptedConnector):
    name = "shelf"
    label = "Shelf platform"
    webhook_topics = ("orders/create", "orders/updated")
    default_rate_per_s = 2.5
    default_burst = 40
    shelf = Shelf()

    def add(self, sku: str, external_id: str, quantity: int | None, **kw: object) -> Variant:
        """A variant on the platform; ``quantity`` at MAIN (None: not stocked there)."""
        variant = Variant(sku, external_id, title=str(kw.pop("title", f"Title of {sku}")), **kw)  # type: ignore[arg-type]
        if quantity is None:
            variant.at_main = False
        else:
            self.platform.shown[external_id] = quantity
        self.shelf.variants.append(variant)
        return variant

    def locations(self, channel: ChannelRef) -> list[PlatformLocation]:
        if self.shelf.down:
            raise ConnectorError(self.shelf.down)
        return list(self.shelf.locations)

    def catalog(self, channel: ChannelRef, progress: Progress | None = None) -> Catalog:
        if self.shelf.down:
            raise ConnectorError(self.shelf.down)
        self.shelf.catalog_reads += 1
        entries = []
        for v in self.shelf.variants:
            quantities = dict(v.elsewhere)
            if v.at_main:
                quantities[MAIN] = self.platform.shown.get(v.external_id, 0)
            entries.append(CatalogEntry(v.sku, v.external_id, v.title, v.tracked, v.platform_managed, quantities))
        return Catalog(entries=entries, requests=1)

    def webhook_subscriptions(self, channel: ChannelRef) -> list[WebhookSubscription]:
        return list(self.shelf.subscriptions.values())

    def webhooks_subscribe(self, channel: ChannelRef, address: str) -> list[WebhookSubscription]:
        if self.shelf.down:
            raise ConnectorError(self.shelf.down)
        self.shelf.subscribe_calls += 1
        for topic in self.webhook_topics:
            if not any(s.topic == topic and s.address == address for s in self.shelf.subscriptions.values()):
                sub = WebhookSubscription(f"wh-{next(self.shelf.ids)}", topic, address)
                self.shelf.subscriptions[sub.id] = sub
        return [s for s in self.shelf.subscriptions.values() if s.address == address]


PATH = "apps.channels.tests.shelf.ShelfConnector"


@pytest.fixture
def shelf(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], ShelfConnector]]:
    """Register the shelf platform as ``shelf`` with a fresh, empty platform; the registry is restored after."""

    def register() -> ShelfConnector:
        ShelfConnector.platform = Platform()
        ShelfConnector.shelf = Shelf()
        monkeypatch.setitem(connectors.CONNECTORS, "shelf", PATH)
        connectors.connector_named.cache_clear()
        connector = connectors.connector_named("shelf")
        assert isinstance(connector, ShelfConnector)
        return connector

    yield register
    connectors.connector_named.cache_clear()
