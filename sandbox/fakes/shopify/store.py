"""The fake store: its items, locations, orders and webhooks, the HTTP server and the GraphQL resolvers."""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from graphql import (
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    build_schema,
    execute,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values
from graphql.type.definition import GraphQLInterfaceType

from sandbox.fakes.shopify.api import (
    DEFAULT_SCOPES,
    GID,
    INVALID_TOKEN_BODY,
    MAX_INPUT_ARRAY,
    REASONS,
    SCHEMA_SDL,
    SEARCH_TERM,
    SINGLE_QUERY_MAX_COST,
    Costing,
    access_denied,
    connection,
    cursor_value,
    graphql_error,
    idempotency_key,
    make_cursor,
    operation_of,
    user_error,
)
from sandbox.fakes.shopify.bulk import Flattener

MAX_PAGE = 250  # Shopify: first/last take at most 250
LOOPBACK = ("127.0.0.1", "localhost", "::1")
KEEP = 10_000  # requests, deliveries, idempotency keys and set quantities the fake remembers
ORDER_ID_BASE = 5_000_000_000  # an order's id is this plus its number (#1001 is 5000001001)


def gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def parse_gid(value: str, kind: str) -> int | None:
    match = GID.match(value or "")
    if match is None or match["type"] != kind:
        return None
    return int(match["id"])


def sign_webhook(body: bytes, secret: str) -> str:
    """``X-Shopify-Hmac-Sha256``: base64 of the HMAC-SHA256 of the raw body, keyed with the app's secret."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeItem:
    id: int
    sku: str
    variant_id: int
    product_id: int
    available: dict[int, int] = field(default_factory=dict)  # location id -> available (stocked there)
    tracked: bool = True  # Shopify counts its quantity (untracked: sold without limit, no quantity kept)
    title: str = ""  # the variant's own title ("M", "Default Title")
    committed: dict[int, int] = field(default_factory=dict)
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class FakeLine:
    id: int
    item_id: int | None
    sku: str
    quantity: int  # as ordered
    current_quantity: int  # after edits, refunds and restocks


# Fulfillment states (Shopify's FulfillmentStatus): SUCCESS shipped; OPEN and PENDING are on their way (no longer
# fulfillable, not shipped); CANCELLED, ERROR and FAILURE never shipped and give their units back.
SHIPPED = "SUCCESS"
UNDER_WAY = ("OPEN", "PENDING")


@dataclass
class FakeFulfillment:
    id: int
    status: str
    lines: dict[int, int]  # line id -> units
    created_at: datetime


@dataclass
class FakeOrder:
    id: int
    number: int
    lines: list[FakeLine]
    created_at: datetime
    updated_at: datetime
    financial_status: str = "paid"
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    location_id: int = 0  # its fulfillment order's assigned location (where it ships from)
    fulfillments: list[FakeFulfillment] = field(default_factory=list)
    source_name: str = "web"  # "pos": sold at a till (Shopify POS), at ``retail_location``
    retail_location: int | None = None

    @property
    def fulfillment_order_id(self) -> int:
        """Its one fulfillment order (this fake never splits an order over locations)."""
        return self.id * 10 + 7

    def fulfillment_order_status(self) -> str:
        if self.cancelled_at:
            return "CANCELLED"
        if all(self.taken(line) >= line.current_quantity for line in self.lines):
            return "CLOSED"
        return "OPEN"

    def shipped(self, line: FakeLine) -> int:
        """Units of the line in successful fulfillments."""
        return sum(f.lines.get(line.id, 0) for f in self.fulfillments if f.status == SHIPPED)

    def taken(self, line: FakeLine) -> int:
        """Units of the line in fulfillments that shipped or are under way (no longer fulfillable)."""
        return sum(f.lines.get(line.id, 0) for f in self.fulfillments if f.status == SHIPPED or f.status in UNDER_WAY)


@dataclass
class Delivery:
    webhook_id: str
    topic: str
    body: bytes
    status: int | None  # HTTP status of the last attempt (None: no answer)
    attempts: int = 0
    url: str = ""  # where it goes (empty: the fake's webhook_url)
    event_id: str = ""  # X-Shopify-Event-Id: the same for every delivery of one event
    subscribed: bool = False  # to a subscription made through the API (signed with the app's client secret)


@dataclass
class FakeBulkOperation:
    id: int
    query: str
    created_at: datetime
    status: str = "CREATED"
    error_code: str | None = None
    completed_at: datetime | None = None
    object_count: int = 0
    root_object_count: int = 0
    body: bytes | None = None  # the JSONL result
    partial: bool = False


class _Bucket:
    """Shopify's leaky bucket of cost points (refilled continuously)."""

    def __init__(self, maximum: float, restore: float) -> None:
        self.maximum, self.restore = float(maximum), float(restore)
        self.available, self.stamp = float(maximum), time.monotonic()

    def refill(self) -> float:
        now = time.monotonic()
        self.available = min(self.maximum, self.available + (now - self.stamp) * self.restore)
        self.stamp = now
        return self.available

    def status(self) -> dict[str, float]:
        return {
            "maximumAvailable": self.maximum,
            "currentlyAvailable": int(self.available),
            "restoreRate": self.restore,
        }


class ShopifyFake:
    """A Shopify store on loopback. Thread-safe; ``start()`` returns self; ``url`` is the shop URL."""

    def __init__(
        self,
        *,
        access_token: str = "shpat_fake_token",
        client_id: str = "",  # a Dev Dashboard app: tokens by the client credentials grant
        client_secret: str = "",
        token_ttl_s: float = 86399.0,
        scopes: Iterable[str] = DEFAULT_SCOPES,  # the app's granted access scopes
        api_versions: Iterable[str] = (),  # the supported versions (empty: any); others fall back to the oldest
        shop_name: str = "Stockroom Test Shop",
        domain: str = "stockroom-test.myshopify.com",
        maximum_available: float = 2000.0,
        restore_rate: float = 100.0,
        webhook_url: str = "",
        webhook_secret: str = "",
        utc_offset_minutes: int = -300,  # REST webhook timestamps carry the shop's offset
        search_lag_s: float = 0.0,  # an order changed this recently is not yet in the orders search
        first_order_number: int = 1001,  # a fake started again for the same channel goes on from its last order
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.access_token, self.shop_name, self.domain = access_token, shop_name, domain
        self.client_id, self.client_secret, self.token_ttl_s = client_id, client_secret, token_ttl_s
        self.issued_tokens: dict[str, float] = {}  # token -> expiry (time.time())
        self.scopes = set(scopes)
        self.api_versions = sorted(api_versions)
        self.webhook_url, self.webhook_secret = webhook_url, webhook_secret
        self.shop_tz = timezone(timedelta(minutes=utc_offset_minutes))
        self.search_lag_s = search_lag_s
        self.lock = threading.RLock()
        self.bucket = _Bucket(maximum_available, restore_rate)
        self.schema: GraphQLSchema = build_schema(SCHEMA_SDL)
        node = self.schema.type_map["Node"]
        assert isinstance(node, GraphQLInterfaceType)
        node.resolve_type = lambda value, _info, _type: value["__typename"]
        self._ids = itertools.count(1001)
        self.locations: dict[int, dict[str, Any]] = {}
        self.main_location = self.add_location("Main warehouse")
        self.items: dict[int, FakeItem] = {}
        self.products: dict[int, dict[str, Any]] = {}  # product id -> {"title", "status"}
        self.orders: dict[int, FakeOrder] = {}
        self.bulk_operations: dict[int, FakeBulkOperation] = {}
        self._bulk_ids = itertools.count(4_100_000_001)
        # Failure modes of bulk operations for tests: the next one ends FAILED with this error code (a
        # partial file kept when ``bulk_fail_partial``); each runs at most this many root objects per second.
        self.bulk_fail: str | None = None
        self.bulk_fail_partial = False
        self.bulk_objects_per_s: float | None = None
        self.subscriptions: dict[int, dict[str, Any]] = {}  # webhook subscriptions made through the API
        self._subscription_ids = itertools.count(1_300_000_001)
        self._order_numbers = itertools.count(first_order_number)
        self._adjustment_groups = itertools.count(1)
        # Bounded, so that a fake serving the demo for days keeps its memory (the newest are kept).
        self._idempotency: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()
        self.deliveries: deque[Delivery] = deque(maxlen=KEEP)
        self.requests: deque[dict[str, Any]] = deque(maxlen=KEEP)
        self.set_history: deque[tuple[str, int]] = deque(maxlen=KEEP)  # (item GID, available) each mutation left
        self.throttled = 0
        self.unauthorized = 0
        # Failure modes for tests: answer this HTTP status this many times; drop webhooks (lost deliveries).
        self.down_status: int | None = None
        self.down_remaining = 0
        self.drop_webhooks = False
        # An outage: every request (the Admin API and the token endpoint) answers ``outage_status`` until then
        # (time.monotonic()); see ``outage``.
        self.outage_until = 0.0
        self.outage_status = 503
        # What becomes of each webhook: ``chaos(delivery)`` answers "deliver", "drop" (lost), "hold" (kept in
        # ``held`` until ``release_held``, so later ones overtake it) or "repeat" (delivered, then the same
        # event again under a new webhook id, as Shopify does for one event). None: every one is delivered.
        self.chaos: Callable[[Delivery], str] | None = None
        self.held: list[Delivery] = []
        # A slow shop: each inventorySetQuantities waits this long before it runs (it runs even if the caller
        # has gone, as Shopify's would); request_arrived is set when one comes in.
        self.delay_s = 0.0
        self.request_arrived = threading.Event()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- life cycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{name}:{port}"

    @property
    def location_id(self) -> str:
        return gid("Location", self.main_location)

    def start(self) -> ShopifyFake:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="shopify-fake", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- the store, as the merchant and shoppers change it -------------------------------

    def add_location(self, name: str, *, active: bool = True) -> int:
        with self.lock:
            number = next(self._ids) * 1000 + 7
            self.locations[number] = {"name": name, "isActive": active}
            return number

    def add_product(self, title: str, *, status: str = "ACTIVE") -> int:
        with self.lock:
            number = next(self._ids) * 1000 + 2
            self.products[number] = {"title": title, "status": status}
            return number

    def add_item(
        self,
        sku: str,
        available: int = 0,
        *,
        location_id: str | None = None,
        stocked: bool = True,
        quantities: dict[str, int] | None = None,
        tracked: bool = True,
        title: str = "",
        product_id: int | None = None,
    ) -> str:
        """A product variant with its inventory item; returns the inventory item GID (Listing.external_id).

        Stocked at ``location_id`` (default: the main location) with ``available``, or, with ``quantities``
        (location GID -> available), at exactly those locations. A new product of its own unless
        ``product_id`` (``add_product``) is given."""
        with self.lock:
            number = next(self._ids) * 1000 + 3
            if product_id is None:
                product_id = number + 2
                self.products[product_id] = {"title": f"Product {sku or number}", "status": "ACTIVE"}
            item = FakeItem(
                id=number, sku=sku, variant_id=number + 1, product_id=product_id, tracked=tracked, title=title
            )
            if quantities is not None:
                for location_gid, quantity in quantities.items():
                    place = parse_gid(location_gid, "Location")
                    if place is None or place not in self.locations:
                        raise ValueError(f"no location {location_gid}")
                    item.available[place] = quantity
                    item.committed[place] = 0
            else:
                location = parse_gid(location_id, "Location") if location_id else self.main_location
                if stocked and location is not None:
                    item.available[location] = available
                    item.committed[location] = 0
            self.items[number] = item
            return gid("InventoryItem", number)

    def available(self, inventory_item_id: str, location_id: str | None = None) -> int | None:
        """What Shopify shows as ``available`` (None: no such item, or not stocked at the location)."""
        with self.lock:
            item = self.items.get(parse_gid(inventory_item_id, "InventoryItem") or 0)
            location = parse_gid(location_id, "Location") if location_id else self.main_location
            return None if item is None else item.available.get(location or 0)

    def set_available(self, inventory_item_id: str, quantity: int, location_id: str | None = None) -> None:
        """The merchant edits the quantity in Shopify's admin (the next compare-and-set must notice)."""
        with self.lock:
            item = self.items[parse_gid(inventory_item_id, "InventoryItem") or 0]
            location = parse_gid(location_id, "Location") if location_id else self.main_location
            item.available[location or 0] = quantity
            item.updated_at = datetime.now(UTC)

    def _order_take(
        self, lines: Iterable[tuple[str, int]], location_id: str | None, *, committed: bool
    ) -> tuple[datetime, int, list[FakeLine]]:
        """(Under the lock.) The order's location and lines; ``available`` there drops by the quantities, and
        ``committed`` rises for an order still to ship."""
        now = datetime.now(UTC)
        place = parse_gid(location_id, "Location") if location_id else self.main_location
        if place is None or place not in self.locations:
            raise ValueError(f"no location {location_id}")
        order_lines = []
        for sku, quantity in lines:
            item = next((i for i in self.items.values() if i.sku == sku), None)
            order_lines.append(
                FakeLine(
                    id=next(self._ids) * 1000 + 5,
                    item_id=item.id if item else None,
                    sku=sku,
                    quantity=quantity,
                    current_quantity=quantity,
                )
            )
            if item is not None and place in item.available:
                item.available[place] -= quantity
                if committed:
                    item.committed[place] = item.committed.get(place, 0) + quantity
        return now, place, order_lines

    def _order_add(self, order: FakeOrder, send_webhook: bool) -> dict[str, Any]:
        with self.lock:
            self.orders[order.id] = order
            payload = self.order_json(order.id)
        if send_webhook:
            self._send_webhook("orders/create", payload)
        return payload

    def create_order(
        self,
        lines: Iterable[tuple[str, int]],
        *,
        financial_status: str = "paid",
        send_webhook: bool = True,
        location_id: str | None = None,
    ) -> dict[str, Any]:
        """A shopper checks out: Shopify routes the order to a location (``location_id``; default the main one),
        whose ``available`` drops by the quantities (committed rises); orders/create."""
        with self.lock:
            now, routed, order_lines = self._order_take(lines, location_id, committed=True)
            number = next(self._order_numbers)
            order = FakeOrder(
                id=ORDER_ID_BASE + number,
                number=number,
                lines=order_lines,
                created_at=now,
                updated_at=now,
                financial_status=financial_status,
                location_id=routed,
            )
        return self._order_add(order, send_webhook)  # the webhook goes out after the lock is let go

    def create_pos_order(
        self, lines: Iterable[tuple[str, int]], *, location_id: str, send_webhook: bool = True
    ) -> dict[str, Any]:
        """A sale at a Shopify POS till in the store ``location_id``: paid and fulfilled at once (the goods leave
        with the customer), ``available`` there drops; source_name ``pos`` with the store as its retail
        location; orders/create."""
        with self.lock:
            now, store, order_lines = self._order_take(lines, location_id, committed=False)
            number = next(self._order_numbers)
            order = FakeOrder(
                id=ORDER_ID_BASE + number,
                number=number,
                lines=order_lines,
                created_at=now,
                updated_at=now,
                location_id=store,
                source_name="pos",
                retail_location=store,
            )
            order.fulfillments.append(
                FakeFulfillment(
                    next(self._ids) * 1000 + 9, SHIPPED, {line.id: line.quantity for line in order_lines}, now
                )
            )
        return self._order_add(order, send_webhook)  # the webhook goes out after the lock is let go

    def move_fulfillment_order(self, order_id: int, location_id: str, *, send_webhook: bool = True) -> dict[str, Any]:
        """``fulfillmentOrderMove``: the order's unfulfilled units now ship from ``location_id`` (what they held
        is given back at the old location and committed at the new one); fulfillment_orders/moved."""
        with self.lock:
            order = self.orders[order_id]
            target = parse_gid(location_id, "Location")
            if target is None or target not in self.locations:
                raise ValueError(f"no location {location_id}")
            if order.fulfillment_order_status() != "OPEN":
                raise ValueError("The fulfillment order is closed.")
            source = order.location_id
            if target != source:
                for line in order.lines:
                    item = self.items.get(line.item_id or 0)
                    left = line.current_quantity - order.taken(line)
                    if item is None or left <= 0:
                        continue
                    if target not in item.available:
                        raise ValueError("The destination location doesn't stock the requested inventory item.")
                    if source in item.available:
                        item.available[source] += left
                        item.committed[source] = item.committed.get(source, 0) - left
                    item.available[target] -= left
                    item.committed[target] = item.committed.get(target, 0) + left
                order.location_id = target
            fulfillment_order = gid("FulfillmentOrder", order.fulfillment_order_id)
            payload = {
                "original_fulfillment_order": {
                    "id": fulfillment_order,
                    "status": "open",
                    "assigned_location_id": gid("Location", target),
                },
                "moved_fulfillment_order": {
                    "id": fulfillment_order,
                    "status": "open",
                    "assigned_location_id": gid("Location", target),
                },
                "destination_location_id": gid("Location", target),
                "fulfillment_order_line_items_requested": None,
                "source_location": {"id": gid("Location", source)},
            }
        if send_webhook:
            self._send_webhook("fulfillment_orders/moved", payload)
        return payload

    def update_order(
        self, order_id: int, *, financial_status: str | None = None, send_webhook: bool = True
    ) -> dict[str, Any]:
        """The merchant or a payment changes the order (marked paid ...): orders/updated."""
        with self.lock:
            order = self.orders[order_id]
            if financial_status is not None:
                order.financial_status = financial_status
            order.updated_at = datetime.now(UTC)
            payload = self.order_json(order_id)
        if send_webhook:
            self._send_webhook("orders/updated", payload)
        return payload

    def fulfill_order(
        self,
        order_id: int,
        quantities: dict[str, int] | None = None,
        *,
        status: str = SHIPPED,
        send_webhook: bool = True,
    ) -> dict[str, Any]:
        """A fulfillment of some units (sku -> units; None: everything still fulfillable), in ``status``: SUCCESS
        ships them (committed falls, available is unchanged), OPEN or PENDING has them under way (no longer
        fulfillable, not shipped). Its id is the last of the payload's ``fulfillments``."""
        with self.lock:
            order = self.orders[order_id]
            units: dict[int, int] = {}
            for line in order.lines:
                left = line.current_quantity - order.taken(line)
                wanted = left if quantities is None else min(left, quantities.get(line.sku, 0))
                if wanted > 0:
                    units[line.id] = wanted
            if units:
                order.fulfillments.append(FakeFulfillment(next(self._ids) * 1000 + 9, status, units, datetime.now(UTC)))
                if status == SHIPPED:
                    self._ship(order, units, 1)
            order.updated_at = datetime.now(UTC)
            payload = self.order_json(order_id)
        if send_webhook:
            self._send_webhook("orders/updated", payload)
        return payload

    def fulfillment_status(
        self, order_id: int, fulfillment_id: int, status: str, *, send_webhook: bool = True
    ) -> dict[str, Any]:
        """A fulfillment moves on: PENDING or OPEN to SUCCESS (shipped), or to CANCELLED, ERROR or FAILURE (its
        units are fulfillable again; a cancelled successful one puts them back in committed)."""
        with self.lock:
            order = self.orders[order_id]
            fulfillment = next(f for f in order.fulfillments if f.id == fulfillment_id)
            was, fulfillment.status = fulfillment.status, status
            if was != SHIPPED and status == SHIPPED:
                self._ship(order, fulfillment.lines, 1)
            elif was == SHIPPED and status != SHIPPED:
                self._ship(order, fulfillment.lines, -1)
            order.updated_at = datetime.now(UTC)
            payload = self.order_json(order_id)
        if send_webhook:
            self._send_webhook("orders/updated", payload)
        return payload

    def _ship(self, order: FakeOrder, units: dict[int, int], sign: int) -> None:
        for line in order.lines:
            item = self.items.get(line.item_id or 0)
            if item is not None and order.location_id in item.committed and line.id in units:
                item.committed[order.location_id] -= sign * units[line.id]

    def edit_order(self, order_id: int, quantities: dict[str, int], *, send_webhook: bool = True) -> dict[str, Any]:
        """An order edit (orderEditBegin ... orderEditCommit): each sku's line set to its new quantity (0 removes
        it; a sku the order lacks is a new line); available follows at the order's location. Shopify sends
        orders/edited (the edit's additions and removals) and orders/updated (the order as it is now)."""
        with self.lock:
            order = self.orders[order_id]
            if order.cancelled_at:
                raise ValueError("a cancelled order cannot be edited")
            additions: list[dict[str, int]] = []
            removals: list[dict[str, int]] = []
            for sku, wanted in quantities.items():
                line = next((ln for ln in order.lines if ln.sku == sku), None)
                if line is None:
                    item = next((i for i in self.items.values() if i.sku == sku), None)
                    line = FakeLine(next(self._ids) * 1000 + 5, item.id if item else None, sku, 0, 0)
                    order.lines.append(line)
                wanted = max(wanted, order.taken(line))  # what shipped or is under way stays on the order
                delta = wanted - line.current_quantity
                if delta == 0:
                    continue
                line.current_quantity = wanted
                if line.quantity == 0:
                    line.quantity = wanted  # a line the edit added is ordered with its quantity
                (additions if delta > 0 else removals).append({"id": line.id, "delta": abs(delta)})
                item = self.items.get(line.item_id or 0)
                if item is not None and order.location_id in item.available:
                    item.available[order.location_id] -= delta
                    item.committed[order.location_id] = item.committed.get(order.location_id, 0) + delta
            order.updated_at = datetime.now(UTC)
            edited = {
                "order_edit": {
                    "id": next(self._ids),
                    "app_id": None,
                    "created_at": self._shop_time(order.updated_at),
                    "committed_at": self._shop_time(order.updated_at),
                    "notify_customer": False,
                    "order_id": order.id,
                    "staff_note": "",
                    "user_id": None,
                    "line_items": {"additions": additions, "removals": removals},
                }
            }
            payload = self.order_json(order_id)
        if send_webhook:
            self._send_webhook("orders/edited", edited)
            self._send_webhook("orders/updated", payload)
        return payload

    def delete_order(self, order_id: int) -> None:
        """The merchant deletes the order (Shopify allows it for cancelled or archived ones): it is gone from the
        API (a null node) and no webhook of ours says so."""
        with self.lock:
            self.orders.pop(order_id, None)

    def cancel_order(
        self, order_id: int, *, restock: bool = True, reason: str = "customer", send_webhook: bool = True
    ) -> dict[str, Any]:
        """The merchant cancels, refunding the unshipped units: with ``restock`` (Shopify's default) they go
        back to ``available`` and leave the line's current quantity; orders/updated and orders/cancelled."""
        with self.lock:
            order = self.orders[order_id]
            now = datetime.now(UTC)
            order.cancelled_at, order.cancel_reason, order.updated_at = now, reason, now
            for fulfillment in order.fulfillments:
                if fulfillment.status in UNDER_WAY:  # what had not shipped does not ship now
                    fulfillment.status = "CANCELLED"
            for line in order.lines:
                item = self.items.get(line.item_id or 0)
                left = line.current_quantity - order.shipped(line)
                if restock:
                    line.current_quantity -= left  # refunded and restocked: no longer part of the order
                if item is not None and order.location_id in item.available:
                    item.committed[order.location_id] -= left
                    if restock:
                        item.available[order.location_id] += left
            payload = self.order_json(order_id)
        if send_webhook:
            self._send_webhook("orders/updated", payload)
            self._send_webhook("orders/cancelled", payload)
        return payload

    # --- webhooks --------------------------------------------------------------------------

    def order_json(self, order_id: int) -> dict[str, Any]:
        """The order as Shopify's REST resource (the webhook body)."""
        with self.lock:
            order = self.orders[order_id]
            lines = []
            for line in order.lines:
                item = self.items.get(line.item_id or 0)
                fulfillable = 0 if order.cancelled_at else max(0, line.current_quantity - order.taken(line))
                lines.append(
                    {
                        "id": line.id,
                        "admin_graphql_api_id": gid("LineItem", line.id),
                        "variant_id": item.variant_id if item else None,
                        "product_id": item.product_id if item else None,
                        "sku": line.sku,
                        "name": f"Product {line.sku}",
                        "title": f"Product {line.sku}",
                        "quantity": line.quantity,
                        "current_quantity": line.current_quantity,
                        "fulfillable_quantity": fulfillable,
                        "fulfillment_status": _line_fulfillment(order, line),
                        "fulfillment_service": "manual",
                        "requires_shipping": True,
                        "variant_inventory_management": "shopify" if item else None,
                        "price": "10.00",
                        "gift_card": False,
                        "taxable": True,
                    }
                )
            return {
                "id": order.id,
                "admin_graphql_api_id": gid("Order", order.id),
                "name": f"#{order.number}",
                "order_number": order.number,
                "number": order.number - 1000,
                "created_at": self._shop_time(order.created_at),
                "updated_at": self._shop_time(order.updated_at),
                "processed_at": self._shop_time(order.created_at),
                "cancelled_at": self._shop_time(order.cancelled_at) if order.cancelled_at else None,
                "cancel_reason": order.cancel_reason,
                "closed_at": None,
                "confirmed": True,
                "currency": "EUR",
                "financial_status": order.financial_status,
                "fulfillment_status": _order_fulfillment(order),
                "test": False,
                "total_price": f"{10 * sum(line.quantity for line in order.lines):.2f}",
                "line_items": lines,
                "fulfillments": [self._fulfillment_json(order, f) for f in order.fulfillments],
                "source_name": order.source_name,
                # REST's location_id: the physical location (a POS till's store) where the order was processed.
                "location_id": order.retail_location,
            }

    def _fulfillment_json(self, order: FakeOrder, fulfillment: FakeFulfillment) -> dict[str, Any]:
        """A fulfillment as the REST order resource nests it (status lower case, its lines with their units)."""
        lines = []
        for line in order.lines:
            units = fulfillment.lines.get(line.id)
            if units:
                lines.append(
                    {
                        "id": line.id,
                        "admin_graphql_api_id": gid("LineItem", line.id),
                        "sku": line.sku,
                        "quantity": units,
                        "fulfillment_status": "fulfilled" if fulfillment.status == SHIPPED else None,
                    }
                )
        return {
            "id": fulfillment.id,
            "admin_graphql_api_id": gid("Fulfillment", fulfillment.id),
            "order_id": order.id,
            "status": fulfillment.status.lower(),
            "created_at": self._shop_time(fulfillment.created_at),
            "line_items": lines,
        }

    def _shop_time(self, moment: datetime) -> str:
        return moment.astimezone(self.shop_tz).replace(microsecond=0).isoformat()

    def _send_webhook(self, topic: str, payload: dict[str, Any]) -> Delivery | None:
        """Send to ``webhook_url`` and to every subscription of the topic made through the API (each address
        once); returns the first delivery."""
        enum = topic.upper().replace("/", "_")
        with self.lock:
            targets = [(self.webhook_url, False)] if self.webhook_url else []
            for subscription in self.subscriptions.values():
                uri = subscription["uri"]
                if (
                    subscription["topic"] == enum
                    and uri.startswith(("http://", "https://"))
                    and uri not in {t for t, _ in targets}
                ):
                    targets.append((uri, True))
        body = json.dumps(payload).encode()
        event_id = str(uuid.uuid4())  # one event, whatever number of deliveries it takes
        first: Delivery | None = None
        for url, subscribed in targets:
            delivery = Delivery(
                webhook_id=str(uuid.uuid4()),
                topic=topic,
                body=body,
                status=None,
                url=url,
                event_id=event_id,
                subscribed=subscribed,
            )
            with self.lock:
                self.deliveries.append(delivery)
            fate = "drop" if self.drop_webhooks else self.chaos(delivery) if self.chaos else "deliver"
            if fate == "hold":
                with self.lock:
                    self.held.append(delivery)
            elif fate != "drop":
                self._deliver(delivery)
                if fate == "repeat":
                    self.resend_event(delivery)
            first = first or delivery
        return first

    def redeliver(self, webhook_id: str) -> Delivery:
        """Shopify's retry: the same body and the same X-Shopify-Webhook-Id again."""
        delivery = next(d for d in self.deliveries if d.webhook_id == webhook_id)
        self._deliver(delivery)
        return delivery

    def resend_event(self, delivery: Delivery) -> Delivery:
        """The same event delivered again as another webhook: a new X-Shopify-Webhook-Id, the same
        X-Shopify-Event-Id and body (what Shopify's duplicate guidance is about)."""
        again = Delivery(
            webhook_id=str(uuid.uuid4()),
            topic=delivery.topic,
            body=delivery.body,
            status=None,
            url=delivery.url,
            event_id=delivery.event_id,
            subscribed=delivery.subscribed,
        )
        with self.lock:
            self.deliveries.append(again)
        self._deliver(again)
        return again

    def release_held(self, order: Callable[[list[Delivery]], list[Delivery]] | None = None) -> int:
        """Deliver the held webhooks, newest first (or in the order ``order`` gives them); returns how many."""
        with self.lock:
            held, self.held = self.held, []
        for delivery in order(held) if order else list(reversed(held)):
            self._deliver(delivery)
        return len(held)

    def outage(self, seconds: float, status: int = 503) -> None:
        """Shopify is down: every request answers ``status`` for ``seconds`` from now."""
        with self.lock:
            self.outage_status = status
            self.outage_until = time.monotonic() + seconds

    def signing_key(self, delivery: Delivery) -> str:
        """Shopify signs the webhooks of subscriptions an app made through the API with the app's client secret
        (a Dev Dashboard app's; an admin-created app's key is ``webhook_secret`` here), and those made under
        Settings > Notifications (``webhook_url``) with the key shown there (``webhook_secret``)."""
        if delivery.subscribed and self.client_secret:
            return self.client_secret
        return self.webhook_secret

    def _deliver(self, delivery: Delivery) -> None:
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": delivery.topic,
            "X-Shopify-Hmac-Sha256": sign_webhook(delivery.body, self.signing_key(delivery)),
            "X-Shopify-Shop-Domain": self.domain,
            "X-Shopify-API-Version": "2026-07",
            "X-Shopify-Webhook-Id": delivery.webhook_id,
            "X-Shopify-Event-Id": delivery.event_id or str(uuid.uuid5(uuid.NAMESPACE_URL, delivery.webhook_id)),
            "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
        }
        target = delivery.url or self.webhook_url
        request = urllib.request.Request(target, data=delivery.body, headers=headers, method="POST")
        delivery.attempts += 1
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                delivery.status = response.status
        except urllib.error.HTTPError as err:
            delivery.status = err.code
        except OSError:
            delivery.status = None

    # --- reading what happened -----------------------------------------------------------

    def log(self) -> dict[str, Any]:
        with self.lock:
            return {
                "throttled": self.throttled,
                "unauthorized": self.unauthorized,
                "bucket": self.bucket.status(),
                "requests": list(self.requests),
                "deliveries": [
                    {"webhook_id": d.webhook_id, "topic": d.topic, "status": d.status, "attempts": d.attempts}
                    for d in self.deliveries
                ],
            }

    def mutations(self) -> list[dict[str, Any]]:
        """The inventorySetQuantities requests that were executed (not throttled), in order."""
        with self.lock:
            return [r for r in self.requests if r.get("mutation") and r["status"] == 200 and not r.get("throttled")]

    # --- the GraphQL endpoint -------------------------------------------------------------

    def graphql(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Run one GraphQL request under the cost model; returns the response body."""
        query = payload.get("query")
        if not isinstance(query, str):
            return {"errors": [{"message": "Parameter Missing or Invalid", "extensions": {"code": "BAD_REQUEST"}}]}
        try:
            document = parse(query)
        except GraphQLError as err:
            return {"errors": [graphql_error(err)]}
        problems = validate(self.schema, document)
        if problems:
            return {"errors": [graphql_error(err) for err in problems]}
        operation = operation_of(document, payload.get("operationName"))
        if operation is None:
            return {"errors": [{"message": "No operation given", "extensions": {"code": "BAD_REQUEST"}}]}
        coerced = get_variable_values(self.schema, operation.variable_definitions or [], payload.get("variables") or {})
        if isinstance(coerced, list):
            return {"errors": [graphql_error(err) for err in coerced]}
        root = self.schema.mutation_type if operation.operation == OperationType.MUTATION else self.schema.query_type
        assert root is not None
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        costing = Costing(self.schema, coerced, fragments)
        requested = costing.cost(operation.selection_set, root, None, mutation=root is self.schema.mutation_type)
        with self.lock:
            self.bucket.refill()
            if requested > SINGLE_QUERY_MAX_COST:
                return {
                    "errors": [
                        {
                            "message": f"Query cost is {requested}, which exceeds the single query max cost limit "
                            f"({SINGLE_QUERY_MAX_COST}).",
                            "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested},
                        }
                    ],
                    "extensions": self._cost_extension(requested, None),
                }
            if requested > self.bucket.available:
                self.throttled += 1
                return {
                    "errors": [
                        {
                            "message": "Throttled",
                            "extensions": {
                                "code": "THROTTLED",
                                "documentation": "https://shopify.dev/api/usage/limits#rate-limits",
                            },
                        }
                    ],
                    "extensions": self._cost_extension(requested, None),
                }
            self.bucket.available -= requested
            result = execute(
                self.schema,
                document,
                root_value=_Root(self),
                variable_values=payload.get("variables") or {},
                operation_name=payload.get("operationName"),
            )
            assert not hasattr(result, "__await__")
            data = result.data  # type: ignore[union-attr]
            actual = costing.cost(operation.selection_set, root, data or {}, mutation=root is self.schema.mutation_type)
            self.bucket.available = min(self.bucket.maximum, self.bucket.available + max(0, requested - actual))
            body: dict[str, Any] = {"data": data}
            if result.errors:  # type: ignore[union-attr]
                body["errors"] = [graphql_error(err) for err in result.errors]  # type: ignore[union-attr]
            body["extensions"] = self._cost_extension(requested, actual)
            return body

    def _cost_extension(self, requested: int, actual: int | None) -> dict[str, Any]:
        return {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": self.bucket.status(),
            }
        }

    # --- resolvers ---------------------------------------------------------------------------

    def item_node(self, item: FakeItem) -> dict[str, Any]:
        fake = self

        def inventory_level(_info: Any, locationId: str) -> dict[str, Any] | None:
            location = parse_gid(locationId, "Location")
            if location is None or location not in item.available:
                return None
            return fake.level_node(item, location)

        def inventory_levels(info: Any, includeInactive: bool | None = False, **page: Any) -> dict[str, Any]:
            places = sorted(
                p for p in item.available if includeInactive or (fake.locations.get(p) or {}).get("isActive")
            )
            return paged(info, places, lambda place: fake.level_node(item, place), **page)

        return {
            "__typename": "InventoryItem",
            "id": gid("InventoryItem", item.id),
            "legacyResourceId": str(item.id),
            "sku": item.sku,
            "tracked": item.tracked,
            "inventoryLevel": inventory_level,
            "inventoryLevels": inventory_levels,
            "variant": lambda _info: fake.variant_node(item),
        }

    def variant_node(self, item: FakeItem) -> dict[str, Any]:
        title = item.title or "Default Title"
        product = self.products.get(item.product_id) or {"title": f"Product {item.product_id}"}
        return {
            "__typename": "ProductVariant",
            "id": gid("ProductVariant", item.variant_id),
            "legacyResourceId": str(item.variant_id),
            "sku": item.sku,
            "title": title,
            "displayName": product["title"] if title == "Default Title" else f"{product['title']} - {title}",
            "product": lambda _info: self.product_node(item.product_id),
            "inventoryItem": lambda _info: self.item_node(item),
        }

    def product_node(self, product_id: int) -> dict[str, Any] | None:
        product = self.products.get(product_id)
        if product is None:
            return None
        fake = self

        def variants(info: Any, sortKey: str | None = None, **page: Any) -> dict[str, Any]:
            mine = sorted(i.id for i in list(fake.items.values()) if i.product_id == product_id)
            return paged(info, mine, lambda number: fake.variant_node(fake.items[number]), **page)

        return {
            "__typename": "Product",
            "id": gid("Product", product_id),
            "legacyResourceId": str(product_id),
            "title": product["title"],
            "status": product.get("status", "ACTIVE"),
            "variants": variants,
        }

    def bulk_node(self, operation: FakeBulkOperation) -> dict[str, Any]:
        done = operation.body is not None
        url = f"{self.url}/_bulk/{operation.id}.jsonl"
        return {
            "__typename": "BulkOperation",
            "id": gid("BulkOperation", operation.id),
            "status": operation.status,
            "errorCode": operation.error_code,
            "type": "QUERY",
            "query": operation.query,
            "createdAt": _utc_iso(operation.created_at),
            "completedAt": _utc_iso(operation.completed_at) if operation.completed_at else None,
            "objectCount": str(operation.object_count),
            "rootObjectCount": str(operation.root_object_count),
            "fileSize": str(len(operation.body)) if done and operation.body else None,
            # Shopify gives no url when the result is empty, and a partial file's address when a query failed.
            "url": url if done and operation.body and not operation.partial else None,
            "partialDataUrl": url if done and operation.body and operation.partial else None,
        }

    def subscription_node(self, number: int) -> dict[str, Any] | None:
        subscription = self.subscriptions.get(number)
        if subscription is None:
            return None
        return {
            "__typename": "WebhookSubscription",
            "id": gid("WebhookSubscription", number),
            "legacyResourceId": str(number),
            **subscription,
            "createdAt": _utc_iso(subscription["createdAt"]),
            "updatedAt": _utc_iso(subscription["updatedAt"]),
        }

    def level_node(self, item: FakeItem, location: int) -> dict[str, Any]:
        # An untracked item keeps its levels, but Shopify counts nothing there: the quantities read 0.
        def quantities(_info: Any, names: list[str]) -> list[dict[str, Any]]:
            available = item.available.get(location, 0) if item.tracked else 0
            committed = item.committed.get(location, 0) if item.tracked else 0
            values = {"available": available, "committed": committed, "on_hand": available + committed}
            return [
                {
                    "id": f"{gid('InventoryQuantity', item.id)}?location={location}&name={name}",
                    "name": name,
                    "quantity": values.get(name, 0),
                    "updatedAt": lambda _info: _utc_iso(item.updated_at),
                }
                for name in names
            ]

        return {
            "__typename": "InventoryLevel",
            "id": f"gid://shopify/InventoryLevel/{item.id}?inventory_item_id={item.id}&location_id={location}",
            "isActive": True,
            "location": self.location_node(location),
            "item": lambda _info: self.item_node(item),
            "quantities": quantities,
            "updatedAt": lambda _info: _utc_iso(item.updated_at),
        }

    def location_node(self, location: int) -> dict[str, Any] | None:
        data = self.locations.get(location)
        if data is None:
            return None
        return {
            "__typename": "Location",
            "id": gid("Location", location),
            "legacyResourceId": str(location),
            "fulfillsOnlineOrders": True,
            **data,
        }

    def order_node(self, order: FakeOrder) -> dict[str, Any]:
        fake = self

        def line_items(_info: Any, first: int | None = None, after: str | None = None, **_: Any) -> dict[str, Any]:
            start = int(cursor_value(after).get("index", -1)) + 1 if after else 0
            count = min(first or 50, 250)
            window = order.lines[start : start + count]
            edges = [
                {"cursor": make_cursor({"index": start + n}), "node": fake.line_node(order, line)}
                for n, line in enumerate(window)
            ]
            return connection(edges, has_next=start + count < len(order.lines), has_previous=start > 0)

        fulfillment = _order_fulfillment(order)
        return {
            "__typename": "Order",
            "id": gid("Order", order.id),
            "legacyResourceId": str(order.id),
            "name": f"#{order.number}",
            "createdAt": _utc_iso(order.created_at),
            "updatedAt": _utc_iso(order.updated_at),
            "cancelledAt": _utc_iso(order.cancelled_at) if order.cancelled_at else None,
            "closed": False,
            "displayFulfillmentStatus": {"fulfilled": "FULFILLED", "partial": "PARTIALLY_FULFILLED"}.get(
                fulfillment or "", "UNFULFILLED"
            ),
            "displayFinancialStatus": order.financial_status.upper(),
            "lineItems": line_items,
            "fulfillments": lambda _info, first=None, **_: [
                fake.fulfillment_node(order, f) for f in order.fulfillments[: first or None]
            ],
            "fulfillmentOrders": lambda info, **page: paged(
                info, [order.id], lambda _key: fake.fulfillment_order_node(order), **page
            ),
            "sourceName": order.source_name,
            "retailLocation": fake.location_node(order.retail_location) if order.retail_location else None,
            "physicalLocation": fake.location_node(order.retail_location) if order.retail_location else None,
        }

    def fulfillment_order_node(self, order: FakeOrder) -> dict[str, Any]:
        fake = self

        def line_items(info: Any, **page: Any) -> dict[str, Any]:
            def node(index: int) -> dict[str, Any]:
                line = order.lines[index]
                return {
                    "id": gid("FulfillmentOrderLineItem", line.id * 10 + 3),
                    "lineItem": fake.line_node(order, line),
                    "totalQuantity": line.current_quantity,
                    "remainingQuantity": max(0, line.current_quantity - order.taken(line)),
                }

            return paged(info, list(range(len(order.lines))), node, **page)

        location = self.location_node(order.location_id)
        return {
            "__typename": "FulfillmentOrder",
            "id": gid("FulfillmentOrder", order.fulfillment_order_id),
            "status": order.fulfillment_order_status(),
            "assignedLocation": {"location": location, "name": (location or {}).get("name", "")},
            "orderId": gid("Order", order.id),
            "order": lambda _info: fake.order_node(order),
            "updatedAt": _utc_iso(order.updated_at),
            "lineItems": line_items,
        }

    def fulfillment_node(self, order: FakeOrder, fulfillment: FakeFulfillment) -> dict[str, Any]:
        fake = self
        named = [(line, fulfillment.lines[line.id]) for line in order.lines if fulfillment.lines.get(line.id)]

        def fulfillment_line_items(_info: Any, first: int | None = None, after: str | None = None, **_: Any) -> Any:
            start = int(cursor_value(after).get("index", -1)) + 1 if after else 0
            count = min(first or 50, 250)
            edges = [
                {
                    "cursor": make_cursor({"index": start + n}),
                    "node": {
                        "id": gid("FulfillmentLineItem", line.id * 10 + 1),
                        "quantity": units,
                        "lineItem": fake.line_node(order, line),
                    },
                }
                for n, (line, units) in enumerate(named[start : start + count])
            ]
            return connection(edges, has_next=start + count < len(named), has_previous=start > 0)

        return {
            "__typename": "Fulfillment",
            "id": gid("Fulfillment", fulfillment.id),
            "status": fulfillment.status,
            "createdAt": _utc_iso(fulfillment.created_at),
            "fulfillmentLineItems": fulfillment_line_items,
        }

    def line_node(self, order: FakeOrder, line: FakeLine) -> dict[str, Any]:
        item = self.items.get(line.item_id or 0)
        unfulfilled = 0 if order.cancelled_at else max(0, line.current_quantity - order.taken(line))
        return {
            "id": gid("LineItem", line.id),
            "sku": line.sku,
            "name": f"Product {line.sku}",
            "quantity": line.quantity,
            "currentQuantity": line.current_quantity,
            "unfulfilledQuantity": unfulfilled,
            "variant": self.variant_node(item) if item else None,
        }

    def node_for(self, value: str) -> dict[str, Any] | None:
        match = GID.match(value or "")
        if match is None:
            raise GraphQLError(f"Invalid global id '{value}'", extensions={"code": "argumentLiteralsIncompatible"})
        number = int(match["id"])
        if match["type"] == "InventoryItem" and number in self.items:
            return self.item_node(self.items[number])
        if match["type"] == "Location":
            return self.location_node(number)
        if match["type"] == "Order" and number in self.orders:
            return self.order_node(self.orders[number])
        if match["type"] == "FulfillmentOrder" and number // 10 in self.orders:
            return self.fulfillment_order_node(self.orders[number // 10])
        if match["type"] == "Fulfillment":
            for order in self.orders.values():
                for fulfillment in order.fulfillments:
                    if fulfillment.id == number:
                        return self.fulfillment_node(order, fulfillment)
            return None
        if match["type"] == "ProductVariant":
            item = next((i for i in self.items.values() if i.variant_id == number), None)
            return self.variant_node(item) if item else None
        if match["type"] == "Product":
            return self.product_node(number)
        if match["type"] == "BulkOperation" and number in self.bulk_operations:
            return self.bulk_node(self.bulk_operations[number])
        if match["type"] == "WebhookSubscription":
            return self.subscription_node(number)
        return None

    def search_orders(
        self, *, first: int | None, after: str | None, query: str | None, sort_key: str | None, reverse: bool
    ) -> dict[str, Any]:
        if first is None:
            raise GraphQLError("you must provide one of first or last", extensions={"code": "BAD_REQUEST"})
        if first > 250:
            raise GraphQLError("The first argument must be between 0 and 250", extensions={"code": "BAD_REQUEST"})
        visible_before = datetime.now(UTC) - timedelta(seconds=self.search_lag_s)
        orders = [o for o in self.orders.values() if o.updated_at <= visible_before and _matches(o, query or "")]

        def sort_value(order: FakeOrder) -> tuple[str, int]:
            key = {"CREATED_AT": order.created_at, "UPDATED_AT": order.updated_at}.get(sort_key or "ID")
            return (_utc_iso(key) if key else f"{order.id:020d}", order.id)

        orders.sort(key=sort_value, reverse=reverse)
        if after:
            mark = cursor_value(after)
            last = (str(mark.get("last_value", "")), int(mark.get("last_id", 0)))
            orders = [o for o in orders if (sort_value(o) < last if reverse else sort_value(o) > last)]
        window = orders[:first]
        edges = []
        for order in window:
            value, number = sort_value(order)
            edges.append(
                {"cursor": make_cursor({"last_id": number, "last_value": value}), "node": self.order_node(order)}
            )
        return connection(edges, has_next=len(orders) > first, has_previous=bool(after))

    def set_quantities(self, info: Any, payload: dict[str, Any]) -> dict[str, Any]:
        key = idempotency_key(info)
        if key is None:
            raise GraphQLError(
                "The @idempotent directive is required for this mutation but was not provided.",
                extensions={"code": "BAD_REQUEST"},
            )
        quantities = payload.get("quantities") or []
        if len(quantities) > MAX_INPUT_ARRAY:
            raise GraphQLError(
                f"The input array size of {len(quantities)} is greater than the maximum allowed of {MAX_INPUT_ARRAY}.",
                extensions={"code": "MAX_INPUT_SIZE_EXCEEDED"},
            )
        for quantity in quantities:
            if "changeFromQuantity" not in quantity:
                raise GraphQLError(
                    "InventoryQuantityInput must include the following argument: changeFromQuantity.",
                    extensions={"code": "INVALID_FIELD_ARGUMENTS"},
                )
        fingerprint = json.dumps(payload, sort_keys=True, default=str)
        if key in self._idempotency:
            seen, answer = self._idempotency[key]
            if seen == fingerprint:
                return answer  # a retry: the original result, nothing applied twice
            return {
                "inventoryAdjustmentGroup": None,
                "userErrors": [
                    {
                        "code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                        "field": None,
                        "message": "The same idempotency key cannot be used with different operation parameters.",
                    }
                ],
            }
        answer = self._set_quantities(payload)
        self._idempotency[key] = (fingerprint, answer)
        while len(self._idempotency) > KEEP:
            self._idempotency.popitem(last=False)
        return answer

    def _set_quantities(self, payload: dict[str, Any]) -> dict[str, Any]:
        name, reason = payload["name"], payload["reason"]
        errors: list[dict[str, Any]] = []
        if name not in ("available", "on_hand"):
            errors.append(
                user_error(
                    "INVALID_NAME", ["input", "name"], "The quantity name must be either 'available' or 'on_hand'."
                )
            )
        if reason not in REASONS:
            errors.append(user_error("INVALID_REASON", ["input", "reason"], "The specified reason is invalid."))
        seen: set[tuple[int, int]] = set()
        plan: list[tuple[FakeItem, int, int]] = []
        for index, quantity in enumerate(payload["quantities"]):
            path = ["input", "quantities", str(index)]
            item = self.items.get(parse_gid(quantity["inventoryItemId"], "InventoryItem") or 0)
            location = parse_gid(quantity["locationId"], "Location")
            if item is None:
                errors.append(
                    user_error(
                        "INVALID_INVENTORY_ITEM",
                        [*path, "inventoryItemId"],
                        "The specified inventory item could not be found.",
                    )
                )
                continue
            if location is None or location not in self.locations:
                errors.append(
                    user_error("INVALID_LOCATION", [*path, "locationId"], "The specified location could not be found.")
                )
                continue
            if location not in item.available:
                errors.append(
                    user_error(
                        "ITEM_NOT_STOCKED_AT_LOCATION",
                        [*path, "locationId"],
                        "The specified inventory item is not stocked at the location.",
                    )
                )
                continue
            if (item.id, location) in seen:
                errors.append(
                    user_error(
                        "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                        [*path, "inventoryItemId"],
                        "The combination of inventoryItemId and locationId must be unique.",
                    )
                )
                continue
            seen.add((item.id, location))
            target = int(quantity["quantity"])
            if target > 1_000_000_000:
                errors.append(
                    user_error(
                        "INVALID_QUANTITY_TOO_HIGH",
                        [*path, "quantity"],
                        "The quantity can't be higher than 1,000,000,000.",
                    )
                )
                continue
            if target < -1_000_000_000 or (name == "on_hand" and target < 0):
                errors.append(user_error("INVALID_QUANTITY_TOO_LOW", [*path, "quantity"], "The quantity is too low."))
                continue
            current = (
                item.available[location] if name == "available" else item.available[location] + item.committed[location]
            )
            expected = quantity["changeFromQuantity"]
            if expected is not None and int(expected) != current:
                errors.append(
                    user_error(
                        "CHANGE_FROM_QUANTITY_STALE",
                        [*path, "changeFromQuantity"],
                        "The changeFromQuantity value does not match persisted value.",
                    )
                )
                continue
            plan.append((item, location, target - current))
        if errors:  # all or nothing: one bad quantity and none is set
            return {"inventoryAdjustmentGroup": None, "userErrors": errors}
        now = datetime.now(UTC)
        changes = []
        for item, location, delta in plan:
            item.available[location] += delta
            item.updated_at = now
            changes.append((item, location, delta))
            self.set_history.append((gid("InventoryItem", item.id), item.available[location]))
        group = next(self._adjustment_groups)
        fake = self

        def change_list(_info: Any, **_: Any) -> list[dict[str, Any]]:
            return [
                {
                    "name": name,
                    "delta": delta,
                    "quantityAfterChange": None,
                    "item": fake.item_node(item),
                    "location": fake.location_node(location),
                }
                for item, location, delta in changes
            ]

        return {
            "inventoryAdjustmentGroup": {
                "id": gid("InventoryAdjustmentGroup", group),
                "createdAt": _utc_iso(now),
                "reason": reason,
                "referenceDocumentUri": payload.get("referenceDocumentUri"),
                "changes": change_list,
            },
            "userErrors": [],
        }

    # --- bulk operations and webhook subscriptions ----------------------------------------

    def bulk_run(self, query: str) -> dict[str, Any]:
        """``bulkOperationRunQuery``: one bulk query at a time per shop and app; the query runs in the background."""
        self.require("bulkOperationRunQuery", "read_products")
        running = [o for o in self.bulk_operations.values() if o.status in ("CREATED", "RUNNING")]
        if running:
            return {
                "bulkOperation": None,
                "userErrors": [
                    {
                        "code": "OPERATION_IN_PROGRESS",
                        "field": None,
                        "message": f"A bulk query operation for this app and shop is already in progress: "
                        f"{gid('BulkOperation', running[0].id)}.",
                    }
                ],
            }
        try:
            document = parse(query)
        except GraphQLError as err:
            return _bulk_invalid(f"Invalid bulk query: {err.message}")
        problems = [err.message for err in validate(self.schema, document)]
        if any(
            isinstance(d, OperationDefinitionNode) and d.operation != OperationType.QUERY for d in document.definitions
        ):
            problems.append("Bulk operations run queries only (bulkOperationRunMutation runs mutations).")
        if not problems:
            problems = Flattener(self.schema, document).problems()
        if problems:
            return _bulk_invalid(f"Invalid bulk query: {'; '.join(problems)}")
        operation = FakeBulkOperation(id=next(self._bulk_ids), query=query, created_at=datetime.now(UTC))
        self.bulk_operations[operation.id] = operation
        threading.Thread(target=self._run_bulk, args=(operation, document), name="shopify-bulk", daemon=True).start()
        return {"bulkOperation": self.bulk_node(operation), "userErrors": []}

    def _run_bulk(self, operation: FakeBulkOperation, document: Any) -> None:
        operation.status = "RUNNING"

        def counted(done: int) -> None:
            operation.root_object_count = done

        error: str | None = None
        try:
            lines = Flattener(self.schema, document).lines(_Root(self), counted)
        except GraphQLError as err:  # a resolver refused (a missing scope): Shopify ends the operation FAILED
            lines, error = [], "ACCESS_DENIED" if "Access denied" in err.message else "INTERNAL_SERVER_ERROR"
        roots = sum(1 for line in lines if "__parentId" not in line)
        pace = self.bulk_objects_per_s
        if pace:  # Shopify's own pace: roots appear in the running counts as it goes
            step = max(1, int(pace / 10))
            for done in range(0, roots, step):
                operation.root_object_count = done
                operation.object_count = int(done * len(lines) / max(roots, 1))
                time.sleep(step / pace)
        failure = self.bulk_fail or error
        partial = bool(failure) and self.bulk_fail_partial and bool(lines)
        if failure and partial:
            lines = lines[: len(lines) // 2]
        body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
        with self.lock:
            operation.object_count = len(lines)
            operation.root_object_count = sum(1 for line in lines if "__parentId" not in line)
            operation.body = body if (not failure or partial) else None
            operation.partial = partial
            operation.completed_at = datetime.now(UTC)
            operation.error_code = failure
            operation.status = "FAILED" if failure else "COMPLETED"
            self.bulk_fail = None

    def bulk_file(self, name: str) -> bytes | None:
        """The JSONL of a finished bulk operation (``<id>.jsonl``), as its ``url`` serves it."""
        match = re.fullmatch(r"(\d+)\.jsonl", name)
        operation = self.bulk_operations.get(int(match[1])) if match else None
        return operation.body if operation else None

    def subscribe(self, topic: str, given: dict[str, Any]) -> dict[str, Any]:
        """``webhookSubscriptionCreate``: HTTPS addresses (and, in this fake, plain HTTP on loopback for tests),
        Pub/Sub and EventBridge addresses; one subscription per topic and address."""
        if topic.startswith("ORDERS_"):
            self.require("webhookSubscriptionCreate", "read_orders")
        uri = str(given.get("uri") or "").strip()
        problem = _address_problem(uri)
        if problem:
            return {
                "webhookSubscription": None,
                "userErrors": [{"field": ["webhookSubscription", "uri"], "message": problem}],
            }
        with self.lock:
            if any(s["topic"] == topic and s["uri"] == uri for s in self.subscriptions.values()):
                return {
                    "webhookSubscription": None,
                    "userErrors": [
                        {
                            "field": ["webhookSubscription", "uri"],
                            "message": "Address for this topic has already been taken",
                        }
                    ],
                }
            number = next(self._subscription_ids)
            now = datetime.now(UTC)
            self.subscriptions[number] = {
                "topic": topic,
                "uri": uri,
                "format": given.get("format") or "JSON",
                "includeFields": list(given.get("includeFields") or []),
                "filter": given.get("filter"),
                "name": given.get("name"),
                "createdAt": now,
                "updatedAt": now,
            }
        return {"webhookSubscription": self.subscription_node(number), "userErrors": []}

    # --- HTTP ---------------------------------------------------------------------------------

    def _record(self, **entry: Any) -> None:
        with self.lock:
            self.requests.append({"at": time.time(), **entry})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self
        graphql_path = re.compile(r"^/admin/api/(?P<version>\d{4}-\d{2}|unstable)/graphql\.json$")

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
                self.send_header("X-Request-Id", str(uuid.uuid4()))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:
                path = urlsplit(self.path).path.rstrip("/")
                if path == "/_fake/log":
                    self._reply(200, fake.log())
                elif path == "/_fake/state":
                    self._reply(200, fake.control_state())
                elif path.startswith("/_bulk/") and fake.bulk_file(path.removeprefix("/_bulk/")) is not None:
                    raw = fake.bulk_file(path.removeprefix("/_bulk/")) or b""
                    self.send_response(200)
                    self.send_header("Content-Type", "application/jsonl")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                else:
                    self._reply(404, {"errors": "Not Found"})

            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                body = self._body()
                if path.startswith("/_fake/"):
                    status, answer = fake.control(path, body)
                    self._reply(status, answer)
                    return
                with fake.lock:
                    out = fake.outage_status if time.monotonic() < fake.outage_until else None
                if out is not None:
                    fake._record(status=out)
                    self._reply(out, {"errors": "Service Unavailable"})
                    return
                if path == "/admin/oauth/access_token":
                    status, answer = fake.grant_token(body, self.headers.get("Content-Type", ""))
                    self._reply(status, answer)
                    return
                match = graphql_path.match(path)
                if match is None:
                    self._reply(404, {"errors": "Not Found"})
                    return
                served = match["version"]
                if fake.api_versions and served not in fake.api_versions:
                    served = fake.api_versions[0]  # Shopify answers an unsupported version with its oldest
                version = {"X-Shopify-API-Version": served}
                if not fake.token_valid(self.headers.get("X-Shopify-Access-Token", "")):
                    with fake.lock:
                        fake.unauthorized += 1
                    fake._record(status=401)
                    self._reply(401, INVALID_TOKEN_BODY, version)
                    return
                with fake.lock:
                    down = fake.down_status if fake.down_remaining > 0 else None
                    if down is not None:
                        fake.down_remaining -= 1
                if down is not None:
                    fake._record(status=down)
                    self._reply(down, {"errors": "Internal Server Error"}, version)
                    return
                try:
                    payload = json.loads(body)
                    assert isinstance(payload, dict)
                except (ValueError, AssertionError):
                    fake._record(status=400)
                    self._reply(400, {"errors": {"query": "Required parameter missing or invalid"}}, version)
                    return
                if "inventorySetQuantities" in str(payload.get("query")):
                    fake.request_arrived.set()
                    if fake.delay_s:
                        time.sleep(fake.delay_s)
                answer = fake.graphql(payload)
                codes = [((e.get("extensions") or {}).get("code")) for e in answer.get("errors") or []]
                cost = (answer.get("extensions") or {}).get("cost") or {}
                fake._record(
                    status=200,
                    mutation="inventorySetQuantities" in str(payload.get("query")),
                    throttled="THROTTLED" in codes,
                    requested=cost.get("requestedQueryCost"),
                    actual=cost.get("actualQueryCost"),
                    quantities=len(((payload.get("variables") or {}).get("input") or {}).get("quantities") or []),
                )
                self._reply(200, answer, version)

        return Handler

    # --- authentication ----------------------------------------------------------------------

    def require(self, field_name: str, scope: str) -> None:
        """Shopify's scope check: write_x grants read_x too."""
        granted = self.scopes | {"read_" + s.removeprefix("write_") for s in self.scopes if s.startswith("write_")}
        if scope not in granted:
            raise access_denied(field_name, scope)

    def token_valid(self, token: str) -> bool:
        if token and self.access_token and hmac.compare_digest(token, self.access_token):
            return True
        with self.lock:
            expiry = self.issued_tokens.get(token)
        return expiry is not None and expiry > time.time()

    def grant_token(self, raw: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
        """The client credentials grant: the app's id and secret for a token that lives ``token_ttl_s``."""
        if "json" in content_type:
            try:
                form = {k: str(v) for k, v in json.loads(raw or b"{}").items()}
            except (ValueError, AttributeError):
                form = {}
        else:
            form = {k: v[0] for k, v in parse_qs(raw.decode(errors="replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": "grant_type must be client_credentials",
            }
        if not self.client_id or not (
            hmac.compare_digest(form.get("client_id", ""), self.client_id)
            and hmac.compare_digest(form.get("client_secret", ""), self.client_secret)
        ):
            return 400, {"error": "invalid_client", "error_description": "Client credentials are invalid"}
        token = f"shpat_{uuid.uuid4().hex}"
        with self.lock:
            self.issued_tokens[token] = time.time() + self.token_ttl_s
        return 200, {
            "access_token": token,
            "scope": "read_inventory,write_inventory,read_orders,read_locations",
            "expires_in": int(self.token_ttl_s),
        }

    # --- the control API of the standalone fake (loopback only) ---------------------------

    def control_state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "shop_url": self.url,
                "location_id": self.location_id,
                "items": [
                    {
                        "inventory_item_id": gid("InventoryItem", item.id),
                        "sku": item.sku,
                        "available": item.available.get(self.main_location),
                    }
                    for item in self.items.values()
                ],
                "orders": [self.order_json(number) for number in self.orders],
            }

    def control(self, path: str, raw: bytes) -> tuple[int, Any]:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return 400, {"error": "bad json"}
        parts = [p for p in path.split("/") if p][1:]
        try:
            if parts == ["items"]:
                return 201, {"inventory_item_id": self.add_item(str(body["sku"]), int(body.get("available", 0)))}
            if parts == ["quantity"]:
                self.set_available(str(body["inventory_item_id"]), int(body["available"]))
                return 200, {"available": self.available(str(body["inventory_item_id"]))}
            if parts == ["orders"]:
                lines = [(str(line["sku"]), int(line["quantity"])) for line in body["lines"]]
                return 201, self.create_order(
                    lines,
                    financial_status=str(body.get("financial_status", "paid")),
                    location_id=body.get("location_id"),
                )
            if parts == ["pos-orders"]:
                lines = [(str(line["sku"]), int(line["quantity"])) for line in body["lines"]]
                return 201, self.create_pos_order(lines, location_id=str(body["location_id"]))
            if len(parts) == 3 and parts[0] == "orders" and parts[2] == "move":
                return 200, self.move_fulfillment_order(int(parts[1]), str(body["location_id"]))
            if parts == ["outage"]:
                self.outage(float(body["seconds"]), int(body.get("status", 503)))
                return 200, {"seconds": float(body["seconds"])}
            if len(parts) == 3 and parts[:1] == ["orders"] and parts[2] == "edit":
                quantities = {str(sku): int(units) for sku, units in body["quantities"].items()}
                return 200, self.edit_order(int(parts[1]), quantities)
            if len(parts) == 3 and parts[0] == "orders":
                actions: dict[str, Callable[[int], dict[str, Any]]] = {
                    "cancel": self.cancel_order,
                    "fulfill": self.fulfill_order,
                    "update": self.update_order,
                }
                return 200, actions[parts[2]](int(parts[1]))
        except (KeyError, ValueError, TypeError) as err:
            return 400, {"error": f"{type(err).__name__}: {err}"}
        return 404, {"error": "unknown control path"}


class _Root:
    """Root values: QueryRoot and Mutation fields resolve here (graphql-core calls them with the arguments)."""

    def __init__(self, fake: ShopifyFake) -> None:
        self.fake = fake

    def shop(self, _info: Any) -> dict[str, Any]:
        return {
            "id": "gid://shopify/Shop/1",
            "name": self.fake.shop_name,
            "myshopifyDomain": self.fake.domain,
            "currencyCode": "EUR",
            "url": f"https://{self.fake.domain}",
        }

    def currentAppInstallation(self, _info: Any) -> dict[str, Any]:
        return {
            "id": "gid://shopify/AppInstallation/1",
            "accessScopes": [{"handle": scope, "description": scope} for scope in sorted(self.fake.scopes)],
        }

    def location(self, _info: Any, id: str | None = None) -> dict[str, Any] | None:
        self.fake.require("location", "read_locations")
        number = parse_gid(id, "Location") if id else self.fake.main_location
        return self.fake.location_node(number) if number else None

    def node(self, _info: Any, id: str) -> dict[str, Any] | None:
        return self.fake.node_for(id)

    def nodes(self, _info: Any, ids: list[str]) -> list[dict[str, Any] | None]:
        if len(ids) > MAX_INPUT_ARRAY:
            raise GraphQLError(
                f"The input array size of {len(ids)} is greater than the maximum allowed of {MAX_INPUT_ARRAY}.",
                extensions={"code": "MAX_INPUT_SIZE_EXCEEDED"},
            )
        return [self.fake.node_for(value) for value in ids]

    def inventoryItem(self, _info: Any, id: str) -> dict[str, Any] | None:
        number = parse_gid(id, "InventoryItem")
        item = self.fake.items.get(number or 0)
        return self.fake.item_node(item) if item else None

    def order(self, _info: Any, id: str) -> dict[str, Any] | None:
        order = self.fake.orders.get(parse_gid(id, "Order") or 0)
        return self.fake.order_node(order) if order else None

    def orders(
        self,
        _info: Any,
        first: int | None = None,
        after: str | None = None,
        query: str | None = None,
        sortKey: str | None = None,
        reverse: bool = False,
        **_: Any,
    ) -> dict[str, Any]:
        self.fake.require("orders", "read_orders")
        return self.fake.search_orders(first=first, after=after, query=query, sort_key=sortKey, reverse=reverse)

    def inventorySetQuantities(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        self.fake.require("inventorySetQuantities", "write_inventory")
        return self.fake.set_quantities(info, input)

    def locations(self, info: Any, includeInactive: bool | None = False, **page: Any) -> dict[str, Any]:
        self.fake.require("locations", "read_locations")
        fake = self.fake
        keys = sorted(n for n, data in list(fake.locations.items()) if includeInactive or data["isActive"])
        page = {k: v for k, v in page.items() if k in ("first", "after", "last", "before", "reverse")}
        return paged(info, keys, fake.location_node, **page)

    def locationsCount(self, _info: Any, query: str | None = None, limit: int | None = 10000) -> dict[str, Any]:
        self.fake.require("locationsCount", "read_locations")
        return _count(sum(1 for data in self.fake.locations.values() if data["isActive"]), limit)

    def products(self, info: Any, **page: Any) -> dict[str, Any]:
        self.fake.require("products", "read_products")
        page = {k: v for k, v in page.items() if k in ("first", "after", "last", "before", "reverse")}
        return paged(info, sorted(self.fake.products), self.fake.product_node, **page)

    def productVariants(self, info: Any, **page: Any) -> dict[str, Any]:
        self.fake.require("productVariants", "read_products")
        fake = self.fake
        page = {k: v for k, v in page.items() if k in ("first", "after", "last", "before", "reverse")}
        return paged(info, sorted(fake.items), lambda number: fake.variant_node(fake.items[number]), **page)

    def productVariantsCount(self, _info: Any, query: str | None = None, limit: int | None = 10000) -> dict[str, Any]:
        self.fake.require("productVariantsCount", "read_products")
        return _count(len(self.fake.items), limit)

    def bulkOperation(self, _info: Any, id: str) -> dict[str, Any] | None:
        operation = self.fake.bulk_operations.get(parse_gid(id, "BulkOperation") or 0)
        return self.fake.bulk_node(operation) if operation else None

    def currentBulkOperation(self, _info: Any, type: str = "QUERY") -> dict[str, Any] | None:
        if type != "QUERY" or not self.fake.bulk_operations:
            return None
        return self.fake.bulk_node(self.fake.bulk_operations[max(self.fake.bulk_operations)])

    def bulkOperationRunQuery(self, _info: Any, query: str, groupObjects: bool) -> dict[str, Any]:
        return self.fake.bulk_run(query)

    def webhookSubscriptions(
        self,
        info: Any,
        topics: list[str] | None = None,
        format: str | None = None,
        uri: str | None = None,
        **page: Any,
    ) -> dict[str, Any]:
        fake = self.fake
        keys = sorted(
            number
            for number, sub in list(fake.subscriptions.items())
            if (not topics or sub["topic"] in topics)
            and (format is None or sub["format"] == format)
            and (uri is None or sub["uri"] == uri)
        )
        page = {k: v for k, v in page.items() if k in ("first", "after", "last", "before", "reverse")}
        return paged(info, keys, fake.subscription_node, **page)

    def webhookSubscriptionCreate(self, _info: Any, topic: str, webhookSubscription: dict[str, Any]) -> dict[str, Any]:
        return self.fake.subscribe(topic, webhookSubscription)

    def fulfillmentOrderMove(
        self, _info: Any, id: str, newLocationId: str, fulfillmentOrderLineItems: list[Any] | None = None
    ) -> dict[str, Any]:
        self.fake.require("fulfillmentOrderMove", "write_merchant_managed_fulfillment_orders")
        number = parse_gid(id, "FulfillmentOrder")
        order = self.fake.orders.get((number or 0) // 10)
        if order is None or order.fulfillment_order_id != number:
            return _move_refused(["id"], "Fulfillment order does not exist.")
        try:
            self.fake.move_fulfillment_order(order.id, newLocationId)
        except ValueError as err:
            return _move_refused(["newLocationId"] if "location" in str(err) else ["id"], str(err))
        node = self.fake.fulfillment_order_node(order)
        return {
            "movedFulfillmentOrder": node,
            "originalFulfillmentOrder": node,
            "remainingFulfillmentOrder": None,
            "userErrors": [],
        }


def _move_refused(field: list[str], message: str) -> dict[str, Any]:
    return {
        "movedFulfillmentOrder": None,
        "originalFulfillmentOrder": None,
        "remainingFulfillmentOrder": None,
        "userErrors": [{"field": field, "message": message}],
    }


def _bulk_invalid(message: str) -> dict[str, Any]:
    return {"bulkOperation": None, "userErrors": [{"code": "INVALID", "field": ["query"], "message": message}]}


def _address_problem(uri: str) -> str | None:
    if not uri:
        return "Address can't be blank"
    parts = urlsplit(uri)
    if parts.scheme in ("pubsub", "arn") or uri.startswith("arn:aws:events:"):
        return None
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return None  # the fake only: Shopify calls HTTPS addresses alone
    if parts.scheme == "http":
        return "Address protocol http:// is not supported"
    return "Address is invalid"


def _count(count: int, limit: int | None) -> dict[str, Any]:
    if limit is not None and count > limit:
        return {"count": limit, "precision": "AT_LEAST"}
    return {"count": count, "precision": "EXACT"}


def paged(
    info: Any,
    keys: list[int],
    to_node: Callable[[int], Any],
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    reverse: bool | None = False,
    **_: Any,
) -> dict[str, Any]:
    """A connection over ``keys`` (ascending ids), paged forward by ``first``/``after`` as Shopify does; in a
    bulk operation everything (Shopify ignores pagination there)."""
    bulk = bool(info.context and info.context.get("bulk"))
    if not bulk:
        if last is not None or before is not None:
            raise GraphQLError("The fake pages forward only: use first and after.", extensions={"code": "BAD_REQUEST"})
        if first is None:
            raise GraphQLError("you must provide one of first or last", extensions={"code": "BAD_REQUEST"})
        if not 0 <= first <= MAX_PAGE:
            raise GraphQLError(
                f"The first argument must be between 0 and {MAX_PAGE}", extensions={"code": "BAD_REQUEST"}
            )
    ordered = keys[::-1] if reverse else keys
    start = 0
    if after and not bulk:
        mark = int(cursor_value(after).get("last_id", 0))
        start = len(keys) - bisect.bisect_left(keys, mark) if reverse else bisect.bisect_right(keys, mark)
    end = len(ordered) if bulk or first is None else start + first
    # Cursors are made only when asked for (a bulk operation's edges never are).
    edges = [{"cursor": _lazy_cursor(key), "node": to_node(key)} for key in ordered[start:end]]
    return connection(edges, has_next=end < len(ordered), has_previous=start > 0)


def _lazy_cursor(key: int) -> Callable[..., str]:
    return lambda *_args, **_kwargs: make_cursor({"last_id": key})


def _matches(order: FakeOrder, query: str) -> bool:
    """Shopify's search syntax, as far as the connector uses it: ``updated_at:>=…`` and friends, ANDed.
    Timestamps compare at whole seconds, as Shopify's search index stores them."""
    for term in SEARCH_TERM.finditer(query):
        raw = term["value"].strip("'\"")
        try:
            bound = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return False
        if bound.tzinfo is None:
            bound = bound.replace(tzinfo=UTC)
        value = (order.updated_at if term["field"] == "updated_at" else order.created_at).replace(microsecond=0)
        op = term["op"] or ">="  # a bare date matches from that moment on
        checks = {">": value > bound, ">=": value >= bound, "<": value < bound, "<=": value <= bound}
        if not checks[op]:
            return False
    return True


def _line_fulfillment(order: FakeOrder, line: FakeLine) -> str | None:
    """REST's line fulfillment status: like Shopify's, it counts units under way (open, pending) as done."""
    taken = order.taken(line)
    if taken <= 0:
        return None
    return "fulfilled" if taken >= line.current_quantity else "partial"


def _order_fulfillment(order: FakeOrder) -> str | None:
    """The order's display fulfillment status, which counts fulfillments under way as fulfilled (as Shopify's)."""
    if sum(order.taken(line) for line in order.lines) <= 0:
        return None
    return "fulfilled" if all(order.taken(line) >= line.current_quantity for line in order.lines) else "partial"
