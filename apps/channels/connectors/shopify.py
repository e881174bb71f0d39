"""Shopify, through the GraphQL Admin API (the version pinned in ``settings.SHOPIFY_API_VERSION``).

Quantities: ``inventorySetQuantities`` sets the ``available`` quantity of each listing's inventory
item (``Listing.external_id``, ``gid://shopify/InventoryItem/<id>``) at the channel's location, up to
250 quantities per request (Shopify's input array limit). Each quantity is a compare-and-set:
``changeFromQuantity`` is what Stockroom last pushed, so a sale or a hand edit on Shopify that we have
not heard of yet is never overwritten; Shopify refuses it with ``CHANGE_FROM_QUANTITY_STALE``, the
connector reads what Shopify shows and reports it as a mismatch. The first push of a listing (nothing
pushed yet) passes ``changeFromQuantity: null``, which opts that one quantity out of the compare. As of
2026-04 ``changeFromQuantity`` must be present on every quantity and the mutation needs the
``@idempotent(key:)`` directive (it replaced ``compareQuantity``/``ignoreCompareQuantity``). The
mutation is all or nothing: one refused quantity and none is set, so the others go again at once in a
second request.

Rate limit: Shopify's cost model, not a request rate. Every answer carries
``extensions.cost.throttleStatus`` (``currentlyAvailable``, ``restoreRate``, ``maximumAvailable``);
the connector keeps the last one per shop and app in Redis, computes how long the next request must
wait for its requested cost (``pause_for`` after a push, ``throttled_for`` before one that would not
fit) and so is normally never ``THROTTLED``; when it is, the wait is computed the same way.

Orders: webhooks ``orders/create``, ``orders/updated``, ``orders/cancelled`` (REST-shaped bodies, signed
with ``X-Shopify-Hmac-Sha256`` by the app's client secret or the shop's webhook key, deduplicated by
``X-Shopify-Event-Id``), ``orders_since``, a backfill poll of ``orders(query: "updated_at:>=…", sortKey:
UPDATED_AT)`` page by page, so an order whose webhook was lost comes in anyway, and ``orders_get``
(``nodes(ids:)`` on order GIDs) for the order truth sweep. An order's id is Shopify's numeric order id in
all three, so every path names the same order. Shipped units are those of the order's successful
fulfillments (``fulfillments { status fulfillmentLineItems }``, REST ``fulfillments[].line_items[]``),
never ``current_quantity - fulfillable_quantity``, which counts open and pending fulfillments as shipped.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from redis.exceptions import RedisError
from rest_framework import serializers

from apps.channels.conf import redis_key, sync_setting
from apps.channels.connectors.base import (
    ID,
    NUMBER,
    ORDER_SHAPE_ERRORS,
    TEXT_OR_NULL,
    Catalog,
    CatalogEntry,
    ChannelRef,
    Connector,
    ConnectorError,
    ConnectorThrottled,
    MalformedOrder,
    OrderLine,
    OrderSource,
    OrdersPage,
    PlaceQuantity,
    PlatformLocation,
    PlatformOrder,
    Progress,
    PushResult,
    QuantityUpdate,
    Webhook,
    WebhookSubscription,
    fields_typed,
    location_map,
    order_body_read,
    order_checked,
    transport_failure,
    url_account,
)
from apps.channels.limits import redis_client
from apps.core.outbound import outbound_session, status_text
from apps.core.redaction import secrets_remember

INVENTORY_ITEM_GID = re.compile(r"^gid://shopify/InventoryItem/\d+$")
LOCATION_GID = re.compile(r"^gid://shopify/Location/\d+$")
API_VERSION = re.compile(r"^(\d{4}-(01|04|07|10)|unstable)$")
MAX_QUANTITIES = 250  # Shopify: "input arguments that accept an array have a maximum size of 250"
READ_BATCH = 100  # inventory items per read: about 3 points each, well under the single-query cap of 1000
LINE_ITEMS_PAGE = 10
MORE_LINE_ITEMS_PAGE = 50
# An order's fulfillments (a list, not a connection: ``first`` caps it), each with its first lines; an order
# with more is read again with MORE_FULFILLMENTS, a fulfillment with more lines page by page.
FULFILLMENTS = 3
FULFILLMENT_LINES = 10
MORE_FULFILLMENTS = 20
MORE_FULFILLMENT_LINES = 50
# An order's fulfillment orders (where Shopify routed it to ship from): the open one names the location.
FULFILLMENT_ORDERS = 4
# What one order costs as read by the poll and by ``orders_get``: the order 1, its lines connection 2 + 3 a
# line (line, variant, inventory item), each fulfillment 1 + its lines connection 2 + 2 a line (and its line),
# its fulfillment orders connection 2 + 3 each (the order, its assigned location, the location), its retail
# location 1.
ORDER_COST = (
    1 + (2 + LINE_ITEMS_PAGE * 3) + FULFILLMENTS * (1 + 2 + FULFILLMENT_LINES * 2) + (2 + FULFILLMENT_ORDERS * 3) + 1
)
ORDERS_PAGE = 8  # orders per poll page (and ids per ``orders_get``): about 820 points, under the cap of 1000
# Shopify's order search is fed asynchronously: a poll trusts it only up to this long before it started.
SEARCH_LAG = timedelta(seconds=30)
REASON = "correction"  # an inventory system setting Shopify to its truth
ORDER_TOPICS = ("orders/create", "orders/updated", "orders/cancelled")
MOVED_TOPIC = "fulfillment_orders/moved"  # Shopify moved an order's fulfillment order to another location
# Fulfillment orders whose location no longer matters (their units shipped or never will).
FULFILLMENT_ORDERS_DONE = ("CLOSED", "CANCELLED", "INCOMPLETE")
STALE_CODES = ("CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE")
# Requested costs, for waiting before a request rather than after a refusal (Shopify charges the
# requested cost up front and refunds the difference).
MUTATION_COST = 12
SHORT_WAIT_S = 0.5  # a wait for the budget this short is slept through rather than handed back to the engine
ORDERS_PAGE_COST = 2 + ORDERS_PAGE * ORDER_COST
ORDERS_GET_COST = ORDERS_PAGE * ORDER_COST
ORDER_GID = "gid://shopify/Order/{}"
# Fulfillment states whose units left the shop (OPEN and PENDING have not shipped yet; CANCELLED, ERROR and
# FAILURE never did).
SHIPPED = "SUCCESS"

SET_QUANTITIES = """
mutation StockroomSetQuantities($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id }
    userErrors { code field message }
  }
}
"""

READ_LEVELS = """
query StockroomLevels($ids: [ID!]!, $locationId: ID!) {
  nodes(ids: $ids) {
    ... on InventoryItem {
      id
      inventoryLevel(locationId: $locationId) { quantities(names: ["available"]) { name quantity } }
    }
  }
}
"""

_LINE_FIELDS = "id sku quantity currentQuantity unfulfilledQuantity variant { inventoryItem { id } }"
_FULFILLMENT_LINE_FIELDS = "lineItem { id } quantity"


def _fulfillment_fields(lines: int) -> str:
    return (
        f"id status fulfillmentLineItems(first: {lines}) {{ nodes {{ {_FULFILLMENT_LINE_FIELDS} }} "
        "pageInfo { hasNextPage endCursor } }"
    )


# Everything the connector reads of an order, the same in the poll and in ``orders_get``.
_ORDER_FIELDS = f"""
        id legacyResourceId name updatedAt cancelledAt displayFulfillmentStatus displayFinancialStatus
        lineItems(first: {LINE_ITEMS_PAGE}) {{ nodes {{ {_LINE_FIELDS} }} pageInfo {{ hasNextPage endCursor }} }}
        fulfillments(first: {FULFILLMENTS}) {{ {_fulfillment_fields(FULFILLMENT_LINES)} }}
        fulfillmentOrders(first: {FULFILLMENT_ORDERS}) {{ nodes {{ status assignedLocation {{ location {{ id }} }} }} }}
        sourceName retailLocation {{ id }}"""

ORDERS = f"""
query StockroomOrders($first: Int!, $after: String, $query: String) {{
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{
    edges {{
      cursor
      node {{ {_ORDER_FIELDS}
      }}
    }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""

# The order truth sweep: these orders as Shopify shows them now (a deleted order's node is null).
ORDERS_GET = f"""
query StockroomOrdersGet($ids: [ID!]!) {{
  nodes(ids: $ids) {{
    ... on Order {{ {_ORDER_FIELDS}
    }}
  }}
}}
"""

# An order with more fulfillments than the first read holds.
MORE_FULFILLMENTS_QUERY = f"""
query StockroomOrderFulfillments($id: ID!) {{
  order(id: $id) {{ fulfillments(first: {MORE_FULFILLMENTS}) {{ {_fulfillment_fields(FULFILLMENT_LINES)} }} }}
}}
"""

# A fulfillment with more lines than the first read holds.
MORE_FULFILLMENT_LINES_QUERY = f"""
query StockroomFulfillmentLines($id: ID!, $after: String) {{
  node(id: $id) {{
    ... on Fulfillment {{
      fulfillmentLineItems(first: {MORE_FULFILLMENT_LINES}, after: $after) {{
        nodes {{ {_FULFILLMENT_LINE_FIELDS} }}
        pageInfo {{ hasNextPage endCursor }}
      }}
    }}
  }}
}}
"""

# The order a moved fulfillment order belongs to (the fulfillment_orders/moved webhook names only the former).
FULFILLMENT_ORDER_ORDER = f"""
query StockroomFulfillmentOrderOrder($id: ID!) {{
  node(id: $id) {{
    ... on FulfillmentOrder {{ order {{ {_ORDER_FIELDS}
    }} }}
  }}
}}
"""

MORE_LINE_ITEMS = f"""
query StockroomOrderLines($id: ID!, $after: String) {{
  order(id: $id) {{
    lineItems(first: {MORE_LINE_ITEMS_PAGE}, after: $after) {{
      nodes {{ {_LINE_FIELDS} }}
      pageInfo {{ hasNextPage endCursor }}
    }}
  }}
}}
"""

SHOP_AND_SCOPES = """
query StockroomConnection { shop { name myshopifyDomain } currentAppInstallation { accessScopes { handle } } }
"""

LOCATION = """
query StockroomLocation($locationId: ID!) { location(id: $locationId) { id name isActive } }
"""

# --- going live: discovery and webhook subscriptions (every field as in the 2026-07 Admin schema) ---

LOCATIONS_PAGE = 250
LOCATIONS = """
query StockroomLocations($first: Int!, $after: String) {
  locations(first: $first, after: $after, includeInactive: true) {
    nodes { id name isActive }
    pageInfo { hasNextPage endCursor }
  }
}
"""

VARIANTS_COUNT = "query StockroomVariantsCount { productVariantsCount(limit: null) { count precision } }"

_LEVEL_FIELDS = 'location { id } quantities(names: ["available"]) { name quantity }'

# Paged: productVariants with each one's levels, as many per page as fit CATALOG_PAGE_COST.
CATALOG_PAGE = f"""
query StockroomCatalog($first: Int!, $after: String, $levels: Int!) {{
  productVariants(first: $first, after: $after) {{
    nodes {{
      id sku displayName
      inventoryItem {{ id tracked inventoryLevels(first: $levels) {{ nodes {{ {_LEVEL_FIELDS} }} }} }}
    }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""

# Bulk: the same fields without pagination (Shopify reads everything; each level becomes a JSONL line of its
# own with __parentId, its variant's id).
CATALOG_BULK = f"""
{{
  productVariants {{
    edges {{
      node {{
        id sku displayName
        inventoryItem {{ id tracked inventoryLevels {{ edges {{ node {{ {_LEVEL_FIELDS} }} }} }} }}
      }}
    }}
  }}
}}
"""

RUN_BULK = """
mutation StockroomCatalogBulk($query: String!) {
  bulkOperationRunQuery(query: $query, groupObjects: false) {
    bulkOperation { id status }
    userErrors { code field message }
  }
}
"""

BULK_STATUS = """
query StockroomBulkStatus($id: ID!) {
  bulkOperation(id: $id) { id status errorCode objectCount rootObjectCount url partialDataUrl }
}
"""

SUBSCRIPTIONS_PAGE = 100
SUBSCRIPTIONS = """
query StockroomWebhooks($first: Int!, $after: String, $topics: [WebhookSubscriptionTopic!]) {
  webhookSubscriptions(first: $first, after: $after, topics: $topics) {
    nodes { id topic uri }
    pageInfo { hasNextPage endCursor }
  }
}
"""

SUBSCRIBE = """
mutation StockroomSubscribe($topic: WebhookSubscriptionTopic!, $subscription: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $subscription) {
    webhookSubscription { id topic uri }
    userErrors { field message }
  }
}
"""

# Shopify's cost of the paged catalog, as its calculated query cost counts it: a connection 2 + its
# nodes; per variant 1, its inventory item 1, the levels connection 2, per level 1 + location 1 +
# quantities 1.
CATALOG_PAGE_COST = 900  # under the single-query cap of 1000, leaving room for the order poll
BULK_POLL_S = (0.2, 2.0)  # the first and the longest wait between two looks at a running bulk operation
BULK_TIMEOUT_S = 3600.0
DISCOVERY_ATTEMPTS = 30  # throttled answers a discovery read waits out before giving up
PROGRESS_EVERY = 1000  # variants between two progress calls while reading a bulk result


def _variant_cost(levels: int) -> int:
    return 1 + 1 + 2 + levels * 3


# What the connector's requests need (write_x grants read_x); read_products for discovering the catalog.
REQUIRED_SCOPES = ("read_inventory", "write_inventory", "read_locations", "read_orders", "read_products")


class ShopifySettings(serializers.Serializer):
    shop_url = serializers.URLField(
        max_length=300, help_text="The shop's address, https://<shop>.myshopify.com (a fake's URL in tests)."
    )
    api_version = serializers.CharField(
        max_length=20, required=False, help_text="Admin API version; empty: the version Stockroom pins."
    )
    location_id = serializers.CharField(
        max_length=100,
        required=False,
        help_text="One Shopify location whose available quantity Stockroom sets (the ATP of every location the "
        "channel sells from): gid://shopify/Location/<id>. Kept as the first location of location_map.",
    )
    location_map = serializers.DictField(
        child=serializers.ListField(child=serializers.SlugField(max_length=40), allow_empty=True, max_length=50),
        required=False,
        allow_empty=False,
        help_text="Each Shopify location and the Stockroom location codes whose ATP it shows, e.g. "
        '{"gid://shopify/Location/1": ["WH"], "gid://shopify/Location/2": ["S1"]}; an empty list: every location '
        "the channel sells from. Orders are reserved at the codes of the location they ship from; POS sales are "
        "booked at the first code of the location they were sold at.",
    )

    def validate_shop_url(self, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise serializers.ValidationError("Give the shop's URL with its scheme: https://<shop>.myshopify.com.")
        return value.rstrip("/")

    def validate_api_version(self, value: str) -> str:
        if value and not API_VERSION.match(value):
            raise serializers.ValidationError("An Admin API version looks like 2026-07 (year and quarter month).")
        return value

    def validate_location_id(self, value: str) -> str:
        return _location_gid(value)

    def validate_location_map(self, value: dict[str, list[str]]) -> dict[str, list[str]]:
        mapped: dict[str, list[str]] = {}
        for place, codes in value.items():
            gid = _location_gid(place)
            if gid in mapped:
                raise serializers.ValidationError(f"{gid} is mapped twice.")
            mapped[gid] = list(dict.fromkeys(codes))
        taken: dict[str, str] = {}
        for gid, codes in mapped.items():
            for code in codes:
                if code in taken:  # one Stockroom location's stock shown twice would sell it twice
                    raise serializers.ValidationError(f"{code} is shown at both {taken[code]} and {gid}.")
                taken[code] = gid
        return mapped

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("api_version"):
            attrs["api_version"] = settings.SHOPIFY_API_VERSION
        mapped = attrs.get("location_map")
        if mapped:
            if attrs.get("location_id") and attrs["location_id"] not in mapped:
                raise serializers.ValidationError({"location_id": "Not one of location_map's locations."})
            if len(mapped) > 1 and any(not codes for codes in mapped.values()):
                raise serializers.ValidationError(
                    {"location_map": "With several Shopify locations, name the Stockroom locations each one shows."}
                )
            attrs.setdefault("location_id", next(iter(mapped)))
        elif attrs.get("location_id"):
            attrs["location_map"] = {attrs["location_id"]: []}  # the one location shows the channel's whole ATP
        return attrs


def _location_gid(value: str) -> str:
    value = str(value).strip()
    if value.isdigit():  # the number shown in the admin's URL
        value = f"gid://shopify/Location/{value}"
    if not LOCATION_GID.match(value):
        raise serializers.ValidationError("A location id looks like gid://shopify/Location/123456789.")
    return value


class ShopifyCredentials(serializers.Serializer):
    """Either the permanent token of an app created in the Shopify admin (before 2026), or the client id and
    secret of an app from the Dev Dashboard installed on the shop (tokens fetched and renewed every 24 h)."""

    access_token = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        help_text="The Admin API access token (shpat_...) of an app created in the Shopify admin.",
    )
    client_id = serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text="A Dev Dashboard app's client ID."
    )
    client_secret = serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text="A Dev Dashboard app's client secret."
    )
    webhook_secret = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        help_text="The key Shopify signs webhooks with (the app's client secret, or the key shown under "
        "Settings > Notifications > Webhooks); empty: client_secret.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = {name: value.strip() for name, value in attrs.items() if value and value.strip()}
        if not attrs.get("access_token") and not (attrs.get("client_id") and attrs.get("client_secret")):
            raise serializers.ValidationError(
                {
                    "access_token": "Give access_token (an app created in the Shopify admin) or client_id and "
                    "client_secret (an app from the Dev Dashboard, installed on the shop)."
                }
            )
        if not attrs.get("webhook_secret") and not attrs.get("client_secret"):
            raise serializers.ValidationError({"webhook_secret": "The key Shopify signs order webhooks with."})
        return attrs


class ShopifyThrottled(ConnectorThrottled):
    """Shopify's cost budget cannot take this read now; ``wait_s`` until it can."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"Shopify's API cost budget is spent: try again in {wait_s:.1f} s.", wait_s=wait_s)


class _Budget:
    """The shop's cost bucket as last reported, shared by every process through Redis (one per shop and app)."""

    def __init__(self, channel: ChannelRef) -> None:
        app = channel.credentials.get("client_id") or channel.credentials.get("access_token") or ""
        fingerprint = f"{channel.settings.get('shop_url', '')}|{app}"
        self.key = redis_key("shopify", "budget", hashlib.sha256(fingerprint.encode()).hexdigest()[:16])

    def wait_for(self, cost: float) -> float:
        """Seconds until the bucket holds ``cost`` points, by the last report refilled since (0: unknown)."""
        try:
            raw = redis_client().hgetall(self.key)
        except RedisError:  # no estimate: Shopify's own answer decides
            return 0.0
        try:
            status = {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}
            restore = max(status["restore"], 0.001)
            available = min(status["maximum"], status["available"] + (time.time() - status["at"]) * restore)
            return max(0.0, (min(cost, status["maximum"]) - available) / restore)
        except (KeyError, ValueError):  # nothing recorded yet
            return 0.0

    def record(self, throttle: Mapping[str, Any]) -> None:
        try:
            mapping = {
                "available": float(throttle["currentlyAvailable"]),
                "restore": float(throttle["restoreRate"]),
                "maximum": float(throttle["maximumAvailable"]),
                "at": time.time(),
            }
        except (KeyError, TypeError, ValueError):  # an answer without a cost report (an HTTP 429)
            return
        try:
            client = redis_client()
            client.hset(self.key, mapping=mapping)
            client.expire(self.key, 3600)
        except RedisError:  # the estimate is an optimisation; Shopify's answers still decide
            return


class _Answer:
    """One GraphQL answer: data, top-level errors and the cost report."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.data: dict[str, Any] = body.get("data") or {}
        self.errors: list[dict[str, Any]] = (
            list(body.get("errors") or []) if isinstance(body.get("errors"), list) else []
        )
        cost = (body.get("extensions") or {}).get("cost") or {}
        self.requested = float(cost.get("requestedQueryCost") or 0)
        self.throttle: dict[str, Any] = cost.get("throttleStatus") or {}
        self.retry_after: float | None = None  # an HTTP 429's Retry-After, which then decides the wait
        self.version = ""  # the API version Shopify answered with (X-Shopify-API-Version)

    @property
    def throttled(self) -> bool:
        return any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in self.errors)

    def wait_for(self, cost: float, *, reserve: float = 0.0) -> float:
        """Seconds until the bucket, as this answer left it, holds ``cost`` (+ ``reserve``) points."""
        if self.retry_after is not None:
            return self.retry_after
        try:
            available = float(self.throttle["currentlyAvailable"])
            restore = float(self.throttle["restoreRate"])
            maximum = float(self.throttle["maximumAvailable"])
        except (KeyError, TypeError, ValueError):
            return 1.0
        need = min(cost + reserve, maximum)
        if available >= need or restore <= 0:
            return 0.0
        # currentlyAvailable is rounded down: a few hundredths more never hurt.
        return math.ceil((need - available) / restore * 100) / 100 + 0.05

    def error_text(self) -> str:
        return "; ".join(
            f"{(e.get('extensions') or {}).get('code') or 'ERROR'}: {e.get('message', '')}" for e in self.errors
        )[:500]


_local = threading.local()


def _session() -> requests.Session:
    """One keep-alive session per thread (the sync worker pushes from a thread pool)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = outbound_session()
    return session


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return ""


def webhook_keys(credentials: Mapping[str, Any]) -> list[str]:
    """The keys a delivery may be signed with. Shopify signs the webhooks an app subscribes through the API
    with the app's client secret (``client_secret``, a Dev Dashboard app authenticating with client
    credentials), and those made under Settings > Notifications > Webhooks, or an admin-created app's, with
    the key shown there (``webhook_secret``): the client secret first, then the webhook secret."""
    keys = [str(credentials.get(name) or "").strip() for name in ("client_secret", "webhook_secret")]
    return list(dict.fromkeys(key for key in keys if key))


def _delivery_id(topic: str, headers: Mapping[str, str], body: bytes) -> str:
    """What the intake deduplicates a delivery by: Shopify's event id (the documented duplicate marker, the
    same for every delivery of one event) with the topic; without it, the webhook id; else the body's hash."""
    event = _header(headers, "X-Shopify-Event-Id").strip()
    if event:
        return f"event:{topic}:{event}"[:200]
    return _header(headers, "X-Shopify-Webhook-Id").strip() or hashlib.sha256(body).hexdigest()


def sign_webhook(body: bytes, secret: str) -> str:
    """What Shopify puts in X-Shopify-Hmac-Sha256: base64 of HMAC-SHA256 of the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _search_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quantity_index(error: Mapping[str, Any]) -> int | None:
    """The index of the quantity a user error names (field ["input", "quantities", "3", ...])."""
    path = error.get("field") or []
    for position, part in enumerate(path[:-1]):
        if part == "quantities" and str(path[position + 1]).isdigit():
            return int(path[position + 1])
    return None


def _status(*, cancelled: bool, fulfillment: str, financial: str, lines: Sequence[OrderLine] | None = None) -> str:
    """Shopify's order state in Stockroom's words (REST values lower case, GraphQL enums upper case).

    With ``lines`` (their shipped units counted from the order's successful fulfillments), fulfilled or
    partly fulfilled is what shipped, not Shopify's display status, which counts open and pending
    fulfillments as done."""
    fulfillment, financial = fulfillment.lower(), financial.lower()
    if cancelled or fulfillment == "restocked":  # restocked: every unit came back, nothing is left to ship
        return PlatformOrder.Status.CANCELLED
    if lines is not None:
        live = [line for line in lines if line.quantity > 0]
        if live and all(line.fulfilled >= line.quantity for line in live):
            return PlatformOrder.Status.FULFILLED
        if any(line.fulfilled > 0 for line in live):
            return PlatformOrder.Status.PARTIALLY_FULFILLED
    elif fulfillment == "fulfilled":
        return PlatformOrder.Status.FULFILLED
    elif fulfillment in ("partial", "partially_fulfilled"):
        return PlatformOrder.Status.PARTIALLY_FULFILLED
    if financial == "pending":  # payment pending (bank deposit, cash on delivery ...): reserve, do not ship yet
        return PlatformOrder.Status.PENDING
    return PlatformOrder.Status.OPEN


def _line(sku: Any, current: Any, shipped: int, external_id: str = "") -> OrderLine:
    """A line as Shopify keeps it now: its current quantity (refunded and removed units are gone from it, so a
    cancellation that restocked leaves only what had shipped) and, of those, the units successfully shipped."""
    quantity = max(0, int(current or 0))
    return OrderLine(
        sku=str(sku or ""), quantity=quantity, fulfilled=min(quantity, max(0, shipped)), external_id=external_id
    )


def _shipped_rest(fulfillments: Any) -> dict[str, int]:
    """Units shipped per line id (REST's numeric id, as text) by a webhook body's successful fulfillments."""
    if not isinstance(fulfillments, list):
        raise TypeError("fulfillments is not a list")
    shipped: dict[str, int] = {}
    for fulfillment in fulfillments:
        if str(fulfillment.get("status") or "").upper() != SHIPPED:
            continue
        for item in fulfillment.get("line_items") or []:
            units = item.get("quantity")
            if isinstance(units, bool) or not isinstance(units, int):
                raise TypeError("a fulfillment line's quantity is not a number")
            key = str(item["id"])
            shipped[key] = shipped.get(key, 0) + units
    return shipped


# What order_from_rest reads, with the types Shopify's REST order resource gives them.
REST_ORDER_FIELDS: dict[str, tuple[type, ...]] = {
    "id": ID,
    "name": TEXT_OR_NULL,
    "cancelled_at": TEXT_OR_NULL,
    "fulfillment_status": TEXT_OR_NULL,
    "financial_status": TEXT_OR_NULL,
    "updated_at": TEXT_OR_NULL,
    "fulfillments": (list, type(None)),
    "source_name": TEXT_OR_NULL,
    "location_id": (int, type(None)),
}
REST_LINE_FIELDS: dict[str, tuple[type, ...]] = {
    "id": ID,
    "sku": TEXT_OR_NULL,
    "quantity": NUMBER,
    "current_quantity": NUMBER,
    "fulfillable_quantity": NUMBER,
}


def order_from_rest(payload: Mapping[str, Any]) -> PlatformOrder:
    """An order webhook's body (Shopify's REST order resource) as a PlatformOrder.

    Shipped units come from ``fulfillments[].line_items[]`` of the fulfillments whose status is success (Shopify
    sends the list with every order webhook); a body without the list ships what its fulfillment status says.
    """
    counted = payload.get("fulfillments") is not None
    shipped = _shipped_rest(payload["fulfillments"]) if counted else {}
    display = str(payload.get("fulfillment_status") or "").lower()
    lines = []
    for item in payload.get("line_items") or []:
        current = item.get("current_quantity", item.get("quantity"))
        everything = int(current or 0) if display == "fulfilled" else 0  # only for a body without the list
        units = shipped.get(str(item.get("id")), 0) if counted else everything
        lines.append(_line(item.get("sku"), current, units))
    pos = str(payload.get("source_name") or "") == "pos" and payload.get("location_id") is not None
    return PlatformOrder(
        external_id=str(payload["id"]),
        status=_status(
            cancelled=bool(payload.get("cancelled_at")),
            fulfillment=display,
            financial=str(payload.get("financial_status") or ""),
            lines=lines if counted else None,
        ),
        lines=tuple(lines),
        updated_at=_parse_time(payload.get("updated_at")),
        number=str(payload.get("name") or ""),
        # A REST body does not say where an online order ships from (its fulfillment orders): "" until read.
        location=f"gid://shopify/Location/{payload['location_id']}" if pos else "",
        source=OrderSource.POS if pos else OrderSource.ONLINE,
    )


def _order_location(node: Mapping[str, Any]) -> tuple[str, str]:
    """(location, source) of a GraphQL order: a POS sale's retail location, else the location of its first
    fulfillment order still to ship (the first one at all when every one is done)."""
    retail = str((node.get("retailLocation") or {}).get("id") or "")
    if str(node.get("sourceName") or "") == "pos" and retail:
        return retail, OrderSource.POS
    orders = ((node.get("fulfillmentOrders") or {}).get("nodes")) or []
    live = [fo for fo in orders if str(fo.get("status") or "") not in FULFILLMENT_ORDERS_DONE] or orders
    for fulfillment_order in live:
        place = str(((fulfillment_order.get("assignedLocation") or {}).get("location") or {}).get("id") or "")
        if place:
            return place, OrderSource.ONLINE
    return "", OrderSource.ONLINE


def _line_from_graphql(node: Mapping[str, Any], shipped: Mapping[str, int]) -> OrderLine:
    item = ((node.get("variant") or {}).get("inventoryItem") or {}).get("id") or ""
    units = shipped.get(str(node.get("id") or ""), 0)
    return _line(node.get("sku"), node.get("currentQuantity"), units, external_id=item)


def _topic_enum(topic: str) -> str:
    """orders/create -> ORDERS_CREATE (the GraphQL enum of a webhook topic)."""
    return topic.upper().replace("/", "_")


_TOPIC_NAMES = {_topic_enum(topic): topic for topic in (*ORDER_TOPICS, MOVED_TOPIC)}


def _subscription(node: Mapping[str, Any]) -> WebhookSubscription:
    return WebhookSubscription(
        id=str(node.get("id") or ""),
        topic=_TOPIC_NAMES.get(str(node.get("topic") or ""), str(node.get("topic") or "").lower().replace("_", "/", 1)),
        address=str(node.get("uri") or ""),
    )


def _level_quantity(quantities: dict[str, int], level: Mapping[str, Any]) -> None:
    location = str((level.get("location") or {}).get("id") or "")
    available = next((q for q in level.get("quantities") or [] if q.get("name") == "available"), None)
    if location and available is not None:
        quantities[location] = int(available.get("quantity") or 0)


def _entry(node: Mapping[str, Any], quantities: dict[str, int]) -> CatalogEntry:
    item = node.get("inventoryItem") or {}
    return CatalogEntry(
        sku=str(node.get("sku") or "").strip(),
        external_id=str(item.get("id") or ""),
        title=str(node.get("displayName") or node.get("title") or ""),
        tracked=bool(item.get("tracked", True)),
        quantities=quantities,
    )


def _cursor(started: datetime, after: str | None) -> str:
    return json.dumps({"started": started.isoformat(), "after": after}, separators=(",", ":"))


@dataclass(frozen=True)
class _Slot:
    """One quantity of a push: a listing's inventory item at one Shopify location. ``listing_id`` is the slot's
    own number (the push's inner result is keyed by it)."""

    listing_id: int
    update: QuantityUpdate
    place: str
    available: int
    last_pushed: int | None

    @property
    def external_id(self) -> str:
        return self.update.external_id


class ShopifyConnector(Connector):
    name = "shopify"
    credential_destinations = ("shop_url",)
    label = "Shopify"
    settings_serializer = ShopifySettings
    credentials_serializer = ShopifyCredentials
    receives_orders = True
    polls_orders = True
    max_batch = MAX_QUANTITIES
    # Shopify limits GraphQL by cost, not by requests: a bucket of points (2,000 on standard plans, refilled
    # at 100 per second; more on Advanced and Plus) from which each request's requested cost is taken. A
    # push costs about 10 points however many of its 250 quantities change, so 4 pushes a second (1,000
    # quantities) use 40 of the 100 points restored each second, leaving the rest to the order poll (about
    # 330 points a page) and read-backs; the connector also waits for the bucket itself (``pause_for``), so
    # this request rate is only the ceiling the engine keeps when the channel sets none.
    default_rate_per_s = 4.0
    default_burst = 8
    orders_get_batch = ORDERS_PAGE  # ids per ``nodes(ids:)`` read: about 820 of the single query's 1,000 points
    webhook_topics = (*ORDER_TOPICS, MOVED_TOPIC)
    sets_places = True

    def account(self, settings: Mapping[str, Any]) -> str:
        return url_account(settings.get("shop_url"))

    # --- quantities ----------------------------------------------------------------------

    def push(self, channel: ChannelRef, updates: Sequence[QuantityUpdate]) -> PushResult:
        """Each listing's quantity at each of its Shopify locations (``QuantityUpdate.places``; without them, at
        the channel's one location), every one a compare-and-set against what that location was last told. A
        listing is accepted once every location took its quantity; mismatched when one showed another quantity
        (``mismatched_places`` says what each shows now)."""
        result = PushResult()
        slots: list[_Slot] = []
        items_seen: set[str] = set()
        default_place = next(iter(location_map(channel.settings)), "")
        for update in updates:
            if not INVENTORY_ITEM_GID.match(update.external_id or ""):
                result.failed[update.listing_id] = (
                    "No Shopify inventory item: the listing's external_id must be gid://shopify/InventoryItem/<id>."
                )
            elif update.external_id in items_seen:
                result.failed[update.listing_id] = f"Another listing of this push sets {update.external_id} too."
            else:
                items_seen.add(update.external_id)
                places = update.places or (PlaceQuantity(default_place, update.available, update.last_pushed),)
                slots.extend(
                    _Slot(len(slots) + n, update, place.place, place.available, place.last_pushed)
                    for n, place in enumerate(places)
                )
        if not slots:
            return result
        done = self._push_slots(channel, slots)
        result.requests, result.pause_for, result.retry_after = done.requests, done.pause_for, done.retry_after
        if done.throttled_for is not None:
            return PushResult(throttled_for=done.throttled_for, requests=done.requests)
        by_listing: dict[int, list[_Slot]] = {}
        for slot in slots:
            by_listing.setdefault(slot.update.listing_id, []).append(slot)
        accepted = set(done.accepted)
        for listing_id, own in by_listing.items():
            failed = [done.failed[slot.listing_id] for slot in own if slot.listing_id in done.failed]
            stale = [slot for slot in own if slot.listing_id in done.mismatched]
            if failed:
                result.failed[listing_id] = failed[0]
            elif stale:
                # The listing over its locations: those that took the quantity show it; the others what they show.
                every = {
                    slot.place: done.mismatched[slot.listing_id] if slot in stale else slot.available for slot in own
                }
                result.mismatched[listing_id] = (
                    None if any(v is None for v in every.values()) else sum(v or 0 for v in every.values())
                )
                result.mismatched_places[listing_id] = {slot.place: done.mismatched[slot.listing_id] for slot in stale}
            elif all(slot.listing_id in accepted for slot in own):
                result.accepted.append(listing_id)
        return result

    def _push_slots(self, channel: ChannelRef, slots: list[_Slot]) -> PushResult:
        """One quantity per slot (an inventory item at a location), 250 to a request; the result names slots."""
        result = PushResult()
        pending = list(slots)
        refused_here = 0
        budget = _Budget(channel)
        wait = budget.wait_for(MUTATION_COST)
        if wait > SHORT_WAIT_S:  # it would be THROTTLED: nothing is sent, the engine waits and tries the batch again
            return PushResult(throttled_for=wait)
        time.sleep(wait)
        stale: list[_Slot] = []
        last: _Answer | None = None
        while pending:
            chunk, pending = pending[:MAX_QUANTITIES], pending[MAX_QUANTITIES:]
            if last is not None:  # a follow-up request: wait inline for the budget when that is short
                wait = budget.wait_for(MUTATION_COST)
                if wait > float(sync_setting("SYNC_INLINE_WAIT_S")):
                    for update in chunk + pending:
                        result.failed[update.listing_id] = f"Shopify's cost budget is spent for {wait:.1f} s."
                    result.pause_for = wait
                    break
                time.sleep(wait)
            try:
                answer = self._post(channel, SET_QUANTITIES, self._set_variables(channel, chunk))
            except ConnectorError as err:
                if last is None:
                    raise
                for update in chunk + pending:
                    result.failed[update.listing_id] = str(err)
                break
            result.requests += 1
            last = answer
            budget.record(answer.throttle)
            if answer.throttled:
                wait = answer.wait_for(answer.requested or MUTATION_COST)
                if not result.accepted and not stale and len(result.failed) == refused_here:  # nothing happened yet
                    return PushResult(throttled_for=wait, requests=result.requests)
                if wait <= float(sync_setting("SYNC_INLINE_WAIT_S")):
                    time.sleep(wait)
                    pending = chunk + pending
                    continue
                for update in chunk + pending:
                    result.failed[update.listing_id] = f"THROTTLED by Shopify for {wait:.1f} s."
                break
            if answer.errors:
                if result.requests == 1:  # the first request: nothing was set, all of the push fails
                    raise ConnectorError(f"Shopify refused the quantities: {answer.error_text()}")
                for update in chunk:
                    result.failed[update.listing_id] = answer.error_text()
                continue
            retry = self._sort_out(answer, chunk, result, stale)
            pending = retry + pending
        if stale:
            self._settle_stale(channel, stale, result)
        if last is not None and not last.throttled:
            # Leave room in the bucket for the order poll and the read-back (other processes).
            reserve = min(0.2 * float(last.throttle.get("maximumAvailable") or 0), float(ORDERS_PAGE_COST))
            pause = last.wait_for(last.requested or MUTATION_COST, reserve=reserve)
            result.pause_for = max(result.pause_for or 0.0, pause) or None
        return result

    def _set_variables(self, channel: ChannelRef, chunk: Sequence[_Slot]) -> dict[str, Any]:
        return {
            "key": str(uuid.uuid4()),
            "input": {
                "name": "available",
                "reason": REASON,
                "referenceDocumentUri": f"gid://stockroom/Channel/{channel.code}",
                "quantities": [
                    {
                        "inventoryItemId": slot.external_id,
                        "locationId": slot.place,
                        "quantity": slot.available,
                        # Compare with what we last told this location; null (first push) opts this one out.
                        "changeFromQuantity": slot.last_pushed,
                    }
                    for slot in chunk
                ],
            },
        }

    def _sort_out(self, answer: _Answer, chunk: list[_Slot], result: PushResult, stale: list[_Slot]) -> list[_Slot]:
        """File the chunk's quantities by Shopify's answer; returns those to send again (not applied, not at fault)."""
        payload = answer.data.get("inventorySetQuantities") or {}
        errors = payload.get("userErrors") or []
        applied = payload.get("inventoryAdjustmentGroup") is not None
        if not errors:
            if applied:
                result.accepted.extend(u.listing_id for u in chunk)
                return []
            for update in chunk:
                result.failed[update.listing_id] = "Shopify set nothing and gave no reason."
            return []
        at_fault: set[int] = set()
        for error in errors:
            index = _quantity_index(error)
            text = f"{error.get('code') or 'ERROR'}: {error.get('message', '')}"
            if index is None or index >= len(chunk):  # about the request as a whole (reason, idempotency ...)
                for update in chunk:
                    if update.listing_id not in result.failed:
                        result.failed[update.listing_id] = text
                return []
            at_fault.add(index)
            update = chunk[index]
            if error.get("code") in STALE_CODES:
                stale.append(update)
            else:
                result.failed[update.listing_id] = text
        innocent = [u for n, u in enumerate(chunk) if n not in at_fault]
        if applied:  # Shopify took the others (not its documented behaviour, but then they are set)
            result.accepted.extend(u.listing_id for u in innocent)
            return []
        return innocent

    def _settle_stale(self, channel: ChannelRef, stale: list[_Slot], result: PushResult) -> None:
        """Shopify's quantity was not what we last pushed: read what it shows (the error does not say)."""
        try:
            shown = self._read_slots(channel, stale, result)
        except ConnectorError:
            shown = {}
        for slot in stale:
            now = shown.get(slot.listing_id)
            if now is not None and now == slot.available:
                result.accepted.append(slot.listing_id)  # it already shows what we meant to set
            else:
                result.mismatched[slot.listing_id] = now

    def _read_slots(self, channel: ChannelRef, slots: Sequence[_Slot], result: PushResult) -> dict[int, int | None]:
        """What Shopify shows for each slot, read per location."""
        shown: dict[int, int | None] = {}
        by_place: dict[str, list[_Slot]] = {}
        for slot in slots:
            by_place.setdefault(slot.place, []).append(slot)
        for place, own in by_place.items():
            levels = self._levels(channel, [slot.external_id for slot in own], place)
            result.requests += math.ceil(len(own) / READ_BATCH)
            shown.update({slot.listing_id: levels.get(slot.external_id) for slot in own})
        return shown

    def read_back(self, channel: ChannelRef, listings: Sequence[QuantityUpdate]) -> dict[int, int | None]:
        """What each listing shows over the channel's Shopify locations (their sum; None when one lacks it)."""
        wanted = sorted({u.external_id for u in listings if INVENTORY_ITEM_GID.match(u.external_id or "")})
        per_place = [self._levels(channel, wanted, place) for place in location_map(channel.settings)]
        shown: dict[int, int | None] = {}
        for update in listings:
            values = [levels.get(update.external_id) for levels in per_place]
            shown[update.listing_id] = (
                None if not values or any(v is None for v in values) else sum(v or 0 for v in values)
            )
        return shown

    def read_back_places(
        self, channel: ChannelRef, listings: Sequence[QuantityUpdate]
    ) -> dict[int, dict[str, int | None]]:
        """What each listing shows at each of the channel's Shopify locations."""
        wanted = sorted({u.external_id for u in listings if INVENTORY_ITEM_GID.match(u.external_id or "")})
        per_place = {place: self._levels(channel, wanted, place) for place in location_map(channel.settings)}
        return {
            u.listing_id: {place: levels.get(u.external_id) for place, levels in per_place.items()} for u in listings
        }

    def _levels(self, channel: ChannelRef, items: Sequence[str], place: str) -> dict[str, int | None]:
        """Available at ``place`` per inventory item GID (None: not stocked there)."""
        shown: dict[str, int | None] = {}
        wanted = sorted(set(items))
        for start in range(0, len(wanted), READ_BATCH):
            ids = wanted[start : start + READ_BATCH]
            answer = self._read(channel, READ_LEVELS, {"ids": ids, "locationId": place}, cost=3 * len(ids))
            for node in answer.data.get("nodes") or []:
                if not node or not node.get("id"):
                    continue
                level = node.get("inventoryLevel") or {}
                quantity = next((q for q in level.get("quantities") or [] if q.get("name") == "available"), None)
                shown[node["id"]] = None if quantity is None else int(quantity["quantity"])
        return shown

    # --- orders --------------------------------------------------------------------------

    def orders_since(self, channel: ChannelRef, since: datetime | None, cursor: str | None = None) -> OrdersPage:
        if cursor:
            try:
                state = json.loads(cursor)
                started = datetime.fromisoformat(state["started"])
                after = state.get("after")
            except (ValueError, KeyError, TypeError) as err:
                raise ConnectorError(f"Not a cursor of this connector: {cursor[:100]!r}") from err
        else:
            started, after = datetime.now(UTC), None
        query = f"updated_at:>='{_search_time(since)}'" if since else ""
        answer = self._read(
            channel, ORDERS, {"first": ORDERS_PAGE, "after": after, "query": query}, cost=ORDERS_PAGE_COST
        )
        connection = answer.data.get("orders") or {}
        orders = []
        for edge in connection.get("edges") or []:
            orders.append(self._order_from_graphql(channel, edge["node"]))
        page = connection.get("pageInfo") or {}
        if page.get("hasNextPage") and page.get("endCursor"):
            return OrdersPage(orders=orders, complete_until=None, next_cursor=_cursor(started, page["endCursor"]))
        complete = started - SEARCH_LAG
        if since is not None and complete < since:
            complete = since
        return OrdersPage(orders=orders, complete_until=complete, next_cursor=None)

    def orders_get(self, channel: ChannelRef, external_ids: Sequence[str]) -> list[PlatformOrder]:
        """``nodes(ids:)`` on the orders' GIDs (Shopify's numeric order id, as both the webhooks and the poll name
        an order); a null node (the order was deleted) comes back cancelled with no lines. Ids that are not
        Shopify order ids are left out."""
        wanted = [external_id for external_id in external_ids if str(external_id).isdigit()]
        found: list[PlatformOrder] = []
        for start in range(0, len(wanted), ORDERS_PAGE):
            ids = wanted[start : start + ORDERS_PAGE]
            answer = self._read(
                channel, ORDERS_GET, {"ids": [ORDER_GID.format(i) for i in ids]}, cost=len(ids) * ORDER_COST
            )
            nodes = answer.data.get("nodes")
            if not isinstance(nodes, list) or len(nodes) != len(ids):
                raise ConnectorError("Shopify answered the orders' read with another number of orders than asked")
            for external_id, node in zip(ids, nodes, strict=True):
                if node is None:
                    found.append(
                        PlatformOrder(external_id=external_id, status=PlatformOrder.Status.CANCELLED, lines=())
                    )
                elif node.get("id"):
                    found.append(self._order_from_graphql(channel, node))
        return found

    def _shipped_graphql(self, channel: ChannelRef, node: Mapping[str, Any]) -> dict[str, int]:
        """Units shipped per line item GID by the order's successful fulfillments (read further when the first
        read may not hold them all)."""
        fulfillments = list(node.get("fulfillments") or [])
        if len(fulfillments) >= FULFILLMENTS:
            more = self._read(
                channel,
                MORE_FULFILLMENTS_QUERY,
                {"id": node["id"]},
                cost=1 + MORE_FULFILLMENTS * (1 + 2 + FULFILLMENT_LINES * 2),
            )
            fulfillments = list((more.data.get("order") or {}).get("fulfillments") or fulfillments)
        shipped: dict[str, int] = {}
        for fulfillment in fulfillments:
            if str(fulfillment.get("status") or "") != SHIPPED:
                continue
            items = fulfillment.get("fulfillmentLineItems") or {}
            nodes = list(items.get("nodes") or [])
            page = items.get("pageInfo") or {}
            while page.get("hasNextPage") and fulfillment.get("id"):
                further = self._read(
                    channel,
                    MORE_FULFILLMENT_LINES_QUERY,
                    {"id": fulfillment["id"], "after": page.get("endCursor")},
                    cost=1 + 2 + MORE_FULFILLMENT_LINES * 2,
                )
                items = (further.data.get("node") or {}).get("fulfillmentLineItems") or {}
                nodes.extend(items.get("nodes") or [])
                page = items.get("pageInfo") or {}
            for item in nodes:
                line = str((item.get("lineItem") or {}).get("id") or "")
                shipped[line] = shipped.get(line, 0) + int(item.get("quantity") or 0)
        return shipped

    def _order_from_graphql(self, channel: ChannelRef, node: Mapping[str, Any]) -> PlatformOrder:
        place, source = _order_location(node)
        shipped = self._shipped_graphql(channel, node)
        items = node.get("lineItems") or {}
        lines = [_line_from_graphql(line, shipped) for line in items.get("nodes") or []]
        page = items.get("pageInfo") or {}
        while page.get("hasNextPage"):  # an order with more lines than the first page holds
            more = self._read(
                channel,
                MORE_LINE_ITEMS,
                {"id": node["id"], "after": page.get("endCursor")},
                cost=3 * MORE_LINE_ITEMS_PAGE,
            )
            items = (more.data.get("order") or {}).get("lineItems") or {}
            lines.extend(_line_from_graphql(line, shipped) for line in items.get("nodes") or [])
            page = items.get("pageInfo") or {}
        return PlatformOrder(
            external_id=str(node.get("legacyResourceId") or str(node["id"]).rsplit("/", 1)[-1]),
            status=_status(
                cancelled=bool(node.get("cancelledAt")),
                fulfillment=str(node.get("displayFulfillmentStatus") or ""),
                financial=str(node.get("displayFinancialStatus") or ""),
                lines=lines,
            ),
            lines=tuple(lines),
            updated_at=_parse_time(node.get("updatedAt")),
            number=str(node.get("name") or ""),
            location=place,
            source=source,
        )

    def webhook_verify(self, channel: ChannelRef, headers: Mapping[str, str], body: bytes) -> Webhook | None:
        """A delivery signed with one of the channel's webhook keys (``webhook_keys``), deduplicated by Shopify's
        event id: a redelivery of one event (a new X-Shopify-Webhook-Id, the same X-Shopify-Event-Id) and a
        retry (the same webhook id, hence the same event id) have the same ``delivery_id``."""
        given = _header(headers, "X-Shopify-Hmac-Sha256").strip().encode()
        keys = webhook_keys(channel.credentials)
        if not keys or not given:
            return None
        if not any(hmac.compare_digest(sign_webhook(body, key).encode(), given) for key in keys):
            return None
        topic = _header(headers, "X-Shopify-Topic")
        delivery = _delivery_id(topic, headers, body)
        what = f"a signed {topic} webhook"
        if topic == MOVED_TOPIC:
            return Webhook(delivery_id=delivery, topic=topic, orders=self._moved_order(channel, body, what))
        if topic not in ORDER_TOPICS:
            return Webhook(delivery_id=delivery, topic=topic, orders=[])
        payload = order_body_read(body, what)
        fields_typed(payload, REST_ORDER_FIELDS, REST_LINE_FIELDS, what)
        try:
            order = order_from_rest(payload)
        except ORDER_SHAPE_ERRORS as err:
            raise MalformedOrder(f"{what} that is not an order ({type(err).__name__})") from err
        if (
            len(location_map(channel.settings)) > 1
            and order.source != OrderSource.POS
            and order.status != PlatformOrder.Status.CANCELLED
        ):
            # Several locations: where it ships from is in its fulfillment orders, which the REST body lacks.
            # Unread now: reserved by the channel's order of locations, moved once the sweep reads it.
            with contextlib.suppress(ConnectorError):
                order = next(iter(self.orders_get(channel, [order.external_id])), order)
        return Webhook(delivery_id=delivery, topic=topic, orders=[order_checked(order, what)])

    def _moved_order(self, channel: ChannelRef, body: bytes, what: str) -> list[PlatformOrder]:
        """The order of a moved fulfillment order, read now (the webhook names the fulfillment order only)."""
        payload = order_body_read(body, what)
        try:
            moved = payload.get("moved_fulfillment_order") or payload.get("original_fulfillment_order") or {}
            fulfillment_order = str(moved.get("id") or "")
        except AttributeError as err:
            raise MalformedOrder(f"{what} that names no fulfillment order") from err
        if not fulfillment_order.startswith("gid://shopify/FulfillmentOrder/"):
            raise MalformedOrder(f"{what} that names no fulfillment order")
        answer = self._read(channel, FULFILLMENT_ORDER_ORDER, {"id": fulfillment_order}, cost=ORDER_COST + 1)
        node = (answer.data.get("node") or {}).get("order")
        return [order_checked(self._order_from_graphql(channel, node), what)] if node else []

    # --- set-up --------------------------------------------------------------------------

    def test_connection(self, channel: ChannelRef) -> str:
        answer = self._read(channel, SHOP_AND_SCOPES, {}, cost=3)
        shop = answer.data.get("shop") or {}
        name = f"{shop.get('name', '?')} ({shop.get('myshopifyDomain', '?')})"
        installed = (answer.data.get("currentAppInstallation") or {}).get("accessScopes") or []
        granted = {str(scope.get("handle")) for scope in installed}
        granted |= {"read_" + g.removeprefix("write_") for g in granted if g.startswith("write_")}
        missing = [scope for scope in REQUIRED_SCOPES if scope not in granted]
        if missing:
            raise ConnectorError(
                f"Connected to {name}, but the app lacks the access scopes {', '.join(missing)}: add them to the "
                "app's configuration and install the new version on the shop."
            )
        names = []
        for location in location_map(channel.settings) or {"": []}:
            found = self._read(channel, LOCATION, {"locationId": location}, cost=1).data.get("location")
            if not found:
                raise ConnectorError(
                    f"Connected to {name}, but it has no location {location}: copy the id of the location whose "
                    "stock Stockroom sets (Settings > Locations, the number at the end of its address)."
                )
            if not found.get("isActive", True):
                raise ConnectorError(f"Connected to {name}, but its location {found.get('name')} is deactivated.")
            names.append(str(found.get("name")))
        line = f"Connected to {name}; Stockroom sets the available quantity at {', '.join(names)}."
        wanted = str(channel.settings.get("api_version") or settings.SHOPIFY_API_VERSION)
        if answer.version and answer.version != wanted:
            line += (
                f" Shopify no longer serves API version {wanted} and answered with {answer.version}: "
                "Stockroom needs an update."
            )
        return line

    # --- going live: locations, catalog, webhook subscriptions -----------------------------

    def locations(self, channel: ChannelRef) -> list[PlatformLocation]:
        return self._locations(channel, Catalog())

    def _locations(self, channel: ChannelRef, counter: Catalog) -> list[PlatformLocation]:
        found: list[PlatformLocation] = []
        after: str | None = None
        while True:
            answer = self._discover(
                channel, LOCATIONS, {"first": LOCATIONS_PAGE, "after": after}, cost=2 + LOCATIONS_PAGE, counter=counter
            )
            page = answer.data.get("locations") or {}
            for node in page.get("nodes") or []:
                found.append(
                    PlatformLocation(
                        id=str(node["id"]), name=str(node.get("name") or ""), active=bool(node.get("isActive"))
                    )
                )
            info = page.get("pageInfo") or {}
            if not (info.get("hasNextPage") and info.get("endCursor")):
                return found
            after = info["endCursor"]

    def catalog(self, channel: ChannelRef, progress: Progress | None = None, *, bulk: bool | None = None) -> Catalog:
        """Every variant with its inventory item, whether Shopify tracks it and its available quantity at each
        active location. A catalog whose paged read fits the shop's cost bucket as it stands is read page by
        page; a larger one through a bulk operation (one JSONL file, no cost per variant). ``bulk`` forces
        one way."""
        result = Catalog()
        active = [place for place in self._locations(channel, result) if place.active]
        counted = self._discover(channel, VARIANTS_COUNT, {}, cost=1, counter=result)
        total = int(((counted.data.get("productVariantsCount") or {}).get("count")) or 0)
        levels = max(1, len(active))
        bucket = float(counted.throttle.get("maximumAvailable") or CATALOG_PAGE_COST)
        if bulk is None:
            bulk = total * _variant_cost(levels) > bucket
        if progress:
            progress(0, total)
        if bulk:
            self._catalog_bulk(channel, result, total, progress)
        else:
            # A page asks for at most half the bucket, so that it fits while other requests draw on it too.
            page_cost = min(CATALOG_PAGE_COST, bucket / 2)
            self._catalog_paged(channel, result, total, levels, page_cost, progress)
        return result

    def _catalog_paged(
        self, channel: ChannelRef, result: Catalog, total: int, levels: int, page_cost: float, progress: Progress | None
    ) -> None:
        first = max(1, min(MAX_QUANTITIES, int(page_cost - 2) // _variant_cost(levels)))
        after: str | None = None
        while True:
            answer = self._discover(
                channel,
                CATALOG_PAGE,
                {"first": first, "after": after, "levels": levels},
                cost=2 + first * _variant_cost(levels),
                counter=result,
            )
            page = answer.data.get("productVariants") or {}
            for node in page.get("nodes") or []:
                item = node.get("inventoryItem") or {}
                quantities: dict[str, int] = {}
                for level in (item.get("inventoryLevels") or {}).get("nodes") or []:
                    _level_quantity(quantities, level)
                result.entries.append(_entry(node, quantities))
            if progress:
                progress(len(result.entries), total)
            info = page.get("pageInfo") or {}
            if not (info.get("hasNextPage") and info.get("endCursor")):
                return
            after = info["endCursor"]

    def _catalog_bulk(self, channel: ChannelRef, result: Catalog, total: int, progress: Progress | None) -> None:
        started = self._discover(channel, RUN_BULK, {"query": CATALOG_BULK}, cost=MUTATION_COST, counter=result)
        payload = started.data.get("bulkOperationRunQuery") or {}
        errors = payload.get("userErrors") or []
        operation = payload.get("bulkOperation") or {}
        if errors or not operation.get("id"):
            text = "; ".join(f"{e.get('code') or 'ERROR'}: {e.get('message', '')}" for e in errors) or "no operation"
            if any(e.get("code") == "OPERATION_IN_PROGRESS" for e in errors):
                raise ConnectorError(
                    f"Another bulk query is running on this shop ({text}): Shopify runs one at a time for an app; "
                    "try again when it has finished."
                )
            raise ConnectorError(f"Shopify refused the catalog's bulk query: {text}")
        deadline = time.monotonic() + BULK_TIMEOUT_S
        pause = BULK_POLL_S[0]
        while True:
            time.sleep(pause)
            pause = min(BULK_POLL_S[1], pause * 1.5)
            answer = self._discover(channel, BULK_STATUS, {"id": operation["id"]}, cost=1, counter=result)
            status = answer.data.get("bulkOperation") or {}
            state = str(status.get("status") or "")
            if state == "COMPLETED":
                break
            if state in ("FAILED", "CANCELED", "CANCELING", "EXPIRED"):
                raise ConnectorError(
                    f"Shopify's bulk query of the catalog ended {state}"
                    + (f" ({status.get('errorCode')})" if status.get("errorCode") else "")
                    + f" after {status.get('rootObjectCount') or 0} variants: nothing was read; try again."
                )
            if progress:
                progress(min(int(status.get("rootObjectCount") or 0), total), total)
            if time.monotonic() > deadline:
                raise ConnectorError(
                    f"Shopify's bulk query of the catalog was still {state} after {BULK_TIMEOUT_S / 60:.0f} minutes."
                )
        url = status.get("url")
        if not url:  # Shopify gives no file when the query found nothing
            return
        result.requests += 1
        self._read_jsonl(str(url), result, total, progress)

    def _read_jsonl(self, url: str, result: Catalog, total: int, progress: Progress | None) -> None:
        """The bulk result, read as it streams: variant lines, then (anywhere after) level lines naming their
        variant in __parentId."""
        variants: dict[str, tuple[dict[str, Any], dict[str, int]]] = {}
        orphans: list[dict[str, Any]] = []
        try:
            with _session().get(url, stream=True, timeout=float(sync_setting("SYNC_HTTP_TIMEOUT_S"))) as response:
                if response.status_code != 200:
                    raise ConnectorError(
                        f"Shopify's bulk result could not be downloaded (HTTP {response.status_code}): try again."
                    )
                for raw in response.iter_lines(chunk_size=1 << 16):
                    if not raw:
                        continue
                    line = json.loads(raw)
                    parent = line.get("__parentId")
                    if parent is None:
                        variants[str(line.get("id"))] = (line, {})
                        if progress and len(variants) % PROGRESS_EVERY == 0:
                            progress(len(variants), total)
                    elif parent in variants:
                        _level_quantity(variants[parent][1], line)
                    else:
                        orphans.append(line)
        except requests.RequestException as err:  # never the URL: it is signed
            raise transport_failure(err, "Shopify's bulk result could not be downloaded") from err
        except ValueError as err:
            raise ConnectorError(f"Shopify's bulk result has a line that is not JSON: {err}") from err
        for line in orphans:  # a level whose variant came later (Shopify does not promise the order)
            if line["__parentId"] in variants:
                _level_quantity(variants[line["__parentId"]][1], line)
        result.entries.extend(_entry(node, quantities) for node, quantities in variants.values())
        if progress:
            progress(len(result.entries), total)

    def webhook_subscriptions(self, channel: ChannelRef) -> list[WebhookSubscription]:
        counter = Catalog()
        found: list[WebhookSubscription] = []
        after: str | None = None
        topics = [_topic_enum(topic) for topic in self.webhook_topics]
        while True:
            answer = self._discover(
                channel,
                SUBSCRIPTIONS,
                {"first": SUBSCRIPTIONS_PAGE, "after": after, "topics": topics},
                cost=2 + SUBSCRIPTIONS_PAGE,
                counter=counter,
            )
            page = answer.data.get("webhookSubscriptions") or {}
            found.extend(_subscription(node) for node in page.get("nodes") or [])
            info = page.get("pageInfo") or {}
            if not (info.get("hasNextPage") and info.get("endCursor")):
                return found
            after = info["endCursor"]

    def webhooks_subscribe(self, channel: ChannelRef, address: str) -> list[WebhookSubscription]:
        existing = [s for s in self.webhook_subscriptions(channel) if s.address == address]
        have = {s.topic for s in existing}
        counter = Catalog()
        for topic in self.webhook_topics:
            if topic in have:
                continue
            answer = self._discover(
                channel,
                SUBSCRIBE,
                {"topic": _topic_enum(topic), "subscription": {"uri": address, "format": "JSON"}},
                cost=MUTATION_COST,
                counter=counter,
            )
            payload = answer.data.get("webhookSubscriptionCreate") or {}
            created = payload.get("webhookSubscription")
            errors = payload.get("userErrors") or []
            if created:
                existing.append(_subscription(created))
            elif any("already been taken" in str(e.get("message")) for e in errors):
                continue  # made meanwhile by another request: read back below
            else:
                text = "; ".join(str(e.get("message")) for e in errors) or "no subscription and no reason"
                raise ConnectorError(f"Shopify refused the {topic} webhook to {address}: {text}")
        if len(existing) < len(self.webhook_topics):
            existing = [s for s in self.webhook_subscriptions(channel) if s.address == address]
        return sorted(
            existing, key=lambda s: self.webhook_topics.index(s.topic) if s.topic in self.webhook_topics else 99
        )

    def _discover(
        self, channel: ChannelRef, query: str, variables: dict[str, Any], *, cost: float, counter: Catalog
    ) -> _Answer:
        """A set-up read or write: it waits for the cost budget as long as Shopify's report says (a discovery
        is not a sync push that must give its slot back), counting each request in ``counter``."""
        budget = _Budget(channel)
        for _attempt in range(DISCOVERY_ATTEMPTS):
            wait = budget.wait_for(cost)
            if wait > 0:
                time.sleep(wait)
            answer = self._post(channel, query, variables)
            counter.requests += 1
            budget.record(answer.throttle)
            if answer.throttled:
                time.sleep(answer.wait_for(answer.requested or cost))
                continue
            if answer.errors:
                raise ConnectorError(f"Shopify refused the query: {answer.error_text()}")
            return answer
        raise ShopifyThrottled(answer.wait_for(cost))

    # --- HTTP ----------------------------------------------------------------------------

    def _read(self, channel: ChannelRef, query: str, variables: dict[str, Any], *, cost: float) -> _Answer:
        """A query, waiting inline for the cost budget when that is short; raises ShopifyThrottled when not."""
        budget = _Budget(channel)
        inline = float(sync_setting("SYNC_INLINE_WAIT_S"))
        for _attempt in range(3):
            wait = budget.wait_for(cost)
            if wait > inline:
                raise ShopifyThrottled(wait)
            if wait > 0:
                time.sleep(wait)
            answer = self._post(channel, query, variables)
            budget.record(answer.throttle)
            if answer.throttled:
                wait = answer.wait_for(answer.requested or cost)
                if wait > inline:
                    raise ShopifyThrottled(wait)
                time.sleep(wait)
                continue
            if answer.errors:
                raise ConnectorError(f"Shopify refused the query: {answer.error_text()}")
            return answer
        raise ShopifyThrottled(1.0)

    def _post(self, channel: ChannelRef, query: str, variables: dict[str, Any], *, renewed: bool = False) -> _Answer:
        base = str(channel.settings.get("shop_url") or "").rstrip("/")
        version = str(channel.settings.get("api_version") or settings.SHOPIFY_API_VERSION)
        if not base:
            raise ConnectorError("This Shopify channel has no shop_url.")
        token = _access_token(channel, base, renew=renewed)
        url = f"{base}/admin/api/{version}/graphql.json"
        try:
            response = _session().post(
                url,
                json={"query": query, "variables": variables},
                headers={"X-Shopify-Access-Token": token, "Accept": "application/json"},
                timeout=float(sync_setting("SYNC_HTTP_TIMEOUT_S")),
            )
        except requests.RequestException as err:
            raise transport_failure(err, f"Shopify could not be reached at {base}") from err
        status = response.status_code
        if status == 200:
            try:
                body = response.json()
            except ValueError as err:
                raise ConnectorError(
                    f"Shopify answered something that is not JSON ({len(response.content)} bytes)"
                ) from err
            if not isinstance(body, dict):
                raise ConnectorError("Shopify answered JSON that is not a GraphQL answer")
            answer = _Answer(body)
            answer.version = response.headers.get("X-Shopify-API-Version", "")
            return answer
        if status == 429:  # the shop-wide request limit (not the cost model): Retry-After says how long
            try:
                wait = float(response.headers.get("Retry-After") or 1.0)
            except ValueError:
                wait = 1.0
            answer = _Answer({"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]})
            answer.retry_after = max(wait, 0.0)
            return answer
        if status == 401 and not renewed and not channel.credentials.get("access_token"):
            return self._post(channel, query, variables, renewed=True)  # the 24-hour token ran out early
        raise ConnectorError(_http_problem(status, base, version), retry_after=response.headers.get("Retry-After"))


# Tokens of Dev Dashboard apps (client credentials grant), kept in this process's memory only, never stored.
_tokens: dict[str, tuple[str, float]] = {}
_tokens_lock = threading.Lock()


def _access_token(channel: ChannelRef, base: str, *, renew: bool = False) -> str:
    """The token to send: the permanent one, or one fetched with the app's client id and secret until it expires."""
    permanent = str(channel.credentials.get("access_token") or "")
    if permanent:
        return permanent
    client_id = str(channel.credentials.get("client_id") or "")
    client_secret = str(channel.credentials.get("client_secret") or "")
    if not client_id or not client_secret:
        raise ConnectorError("This Shopify channel has neither an access_token nor a client_id and client_secret.")
    key = hashlib.sha256(f"{base}|{client_id}|{client_secret}".encode()).hexdigest()
    with _tokens_lock:
        cached = _tokens.get(key)
        if cached is not None and not renew and cached[1] > time.time() + 60:
            return cached[0]
        try:
            response = _session().post(
                f"{base}/admin/oauth/access_token",
                data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret},
                headers={"Accept": "application/json"},
                timeout=float(sync_setting("SYNC_HTTP_TIMEOUT_S")),
            )
        except requests.RequestException as err:
            raise transport_failure(err, f"Shopify could not be reached at {base}") from err
        if response.status_code != 200:
            raise ConnectorError(
                f"Shopify refused the app's client_id and client_secret ({status_text(response.status_code)}): "
                "the app must be installed on this shop and belong to the shop's "
                "organization."
            )
        try:
            body = response.json()
            token, lifetime = str(body["access_token"]), float(body.get("expires_in") or 86399)
        except (ValueError, KeyError, TypeError) as err:
            raise ConnectorError("Shopify's token answer is unreadable (not JSON with an access_token)") from err
        secrets_remember([token])  # a secret too: the log formatter redacts it
        _tokens[key] = (token, time.time() + lifetime)
        return token


def _http_problem(status: int, base: str, version: str) -> str:
    if status == 401:
        return (
            "Shopify refused the access token (401): set credentials.access_token to the Admin API access token "
            "of the app installed on this shop (or client_id and client_secret of a Dev Dashboard app)."
        )
    if status == 403:
        return (
            "Shopify refused access (403): the app needs the scopes read_inventory, write_inventory, read_orders, "
            "read_locations and read_products."
        )
    if status == 404:
        return f"No Shopify Admin API at {base} for version {version} (404): check shop_url and api_version."
    if status == 402:
        return "The shop is frozen (402 Payment Required): its plan must be paid before the API answers."
    if status == 423:
        return "The shop is locked (423): Shopify locked it; nothing can be changed until it is unlocked."
    return f"Shopify answered {status_text(status)}"
