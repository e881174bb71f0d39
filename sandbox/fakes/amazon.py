"""Amazon's Selling Partner API on loopback, faithful where Stockroom's connector depends on it.

What it speaks (shapes from Amazon's published API models; versions as pinned in settings):

- Login with Amazon: ``POST /auth/o2/token`` (form: ``grant_type=refresh_token``, ``refresh_token``,
  ``client_id``, ``client_secret``) -> ``{"access_token", "refresh_token", "token_type", "expires_in"}``;
  wrong client -> 401 ``invalid_client``, wrong refresh token -> 400 ``invalid_grant``. Access tokens
  live ``token_lifetime_s``; an expired one gets Amazon's 403
  ``{"errors": [{"code": "Unauthorized", "message": "The access token you provided has expired."}]}``.
- Listings Items 2021-08-01: ``patchListingsItem`` (JSON Patch on ``/attributes/fulfillment_availability``
  with ``add``/``replace``/``merge``/``delete``; ``ACCEPTED`` or ``INVALID`` with issues per SKU),
  ``getListingsItem`` and ``searchListingsItems`` (``identifiersType=SKU``, at most 20 identifiers).
- Feeds 2021-06-30: ``createFeedDocument`` -> a presigned upload URL (``PUT``), ``createFeed``
  (``JSON_LISTINGS_FEED``), ``getFeed``, ``getFeedDocument`` -> the processing report (gzip), processed
  ``feed_processing_s`` after submission.
- Reports 2021-06-30: ``createReport`` (``GET_MERCHANT_LISTINGS_ALL_DATA`` for the seller's
  marketplace), ``getReport`` (IN_QUEUE, IN_PROGRESS, then DONE ``report_processing_s`` later; CANCELLED
  when there is no data, as Amazon does for a seller with no listings; FATAL when ``fail_reports`` says
  so, with an error document) and ``getReportDocument`` -> a presigned URL to the tab-separated report
  (header row, Cp1252, gzip when ``report_compression`` is ``"GZIP"``). ``seed_listings(n)`` lists n
  SKUs, some fulfilled by Amazon and some inactive (Amazon has no SKU-less or duplicate listings).
- Orders 2026-01-01: ``searchOrders`` (``lastUpdatedAfter`` or ``createdAfter``, ``fulfilledBy``,
  ``fulfillmentStatuses``, ``paginationToken`` pages, ``lastUpdatedBefore`` in the answer, each order with its
  ``orderItems``; ``includedData=FULFILLMENT`` adds the statuses and shipped counts) and ``getOrder``.
- Orders v0: ``getOrders`` (``LastUpdatedAfter`` or ``CreatedAfter``, ``NextToken`` pages,
  ``LastUpdatedBefore`` in the answer), ``getOrder`` and ``getOrderItems``. As Amazon documents, a page
  token does not replace the filters: each page applies the filters of its own request (a later page that
  leaves ``FulfillmentChannels`` out brings Amazon-fulfilled orders in). Sellers v1
  ``getMarketplaceParticipations``.
- What orders do in real life: ``change_order`` (a line's quantity changes), ``cancel_order``,
  ``delete_order`` (gone: 404), late orders (``create_order(late_s=...)``: found by searches only that long
  after their update time) and ``outage`` (every SP-API call answers 503 while it is on).
- Feeds: ``JSON_LISTINGS_FEED`` submissions have their own limit, 5 per 5 minutes (``feed_type_rate``),
  besides ``createFeed``'s; over it, ``createFeed`` answers 429.
- Per-operation token buckets with Amazon's default rate and burst; every answer carries
  ``x-amzn-RequestId``, all but 403s and 5xx also ``x-amzn-RateLimit-Limit`` (a 429 too); errors
  are ``{"errors": [{"code", "message", "details"}]}``.

Issue codes of rejected listings are descriptive, not Amazon's numeric ones. Driven from Python
(``add_listing``, ``create_order``, ``ship_order``, ``cancel_order``, ``reject``, ``expire_tokens``,
``fail_next``, ``delays``, ``requests``) or over HTTP under ``/_control/`` (``manage.py fake_amazon``).
"""

from __future__ import annotations

import gzip
import json
import math
import re
import secrets
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sandbox.fakes.bucket import RequestBucket

LISTINGS_VERSION = "2021-08-01"
FEEDS_VERSION = "2021-06-30"
REPORTS_VERSION = "2021-06-30"
MERCHANT_LISTINGS = "GET_MERCHANT_LISTINGS_ALL_DATA"
# The columns of the merchant listings report, in Amazon's order.
LISTING_COLUMNS = (
    "item-name",
    "item-description",
    "listing-id",
    "seller-sku",
    "price",
    "quantity",
    "open-date",
    "image-url",
    "item-is-marketplace",
    "product-id-type",
    "zshop-shipping-fee",
    "item-note",
    "item-condition",
    "zshop-category1",
    "zshop-browse-path",
    "zshop-storefront-feature",
    "asin1",
    "asin2",
    "asin3",
    "will-ship-internationally",
    "expedited-shipping",
    "zshop-boldface",
    "product-id",
    "bid-for-featured-placement",
    "add-delete",
    "pending-quantity",
    "fulfillment-channel",
    "merchant-shipping-group",
    "status",
)
ORDERS_VERSION = "v0"
ORDERS_2026 = "2026-01-01"

# Amazon's documented default usage plans: operation -> (requests per second, burst).
DEFAULT_RATES: dict[str, tuple[float, int]] = {
    "patchListingsItem": (5.0, 5),
    "getListingsItem": (5.0, 10),
    "searchListingsItems": (5.0, 5),
    "createFeedDocument": (0.5, 15),
    "createFeed": (0.0083, 15),
    "getFeed": (2.0, 15),
    "getFeedDocument": (0.0222, 10),
    "searchOrders": (0.0056, 20),
    "getOrder": (0.5, 30),
    "getOrders": (0.0167, 20),
    "getOrderItems": (0.5, 30),
    "getMarketplaceParticipations": (0.016, 15),
    "createReport": (0.0167, 15),
    "getReport": (2.0, 15),
    "getReportDocument": (0.0167, 15),
}

ORDER_STATUSES = ("Pending", "Unshipped", "PartiallyShipped", "Shipped", "Canceled", "Unfulfillable")
# v0 OrderStatus -> 2026-01-01 FulfillmentStatus
FULFILLMENT_STATUS = {
    "PendingAvailability": "PENDING_AVAILABILITY",
    "Pending": "PENDING",
    "Unshipped": "UNSHIPPED",
    "PartiallyShipped": "PARTIALLY_SHIPPED",
    "Shipped": "SHIPPED",
    "Canceled": "CANCELLED",
    "Unfulfillable": "UNFULFILLABLE",
}
INCLUDED_DATA = (
    "BUYER",
    "RECIPIENT",
    "PROCEEDS",
    "EXPENSE",
    "PROMOTION",
    "CANCELLATION",
    "FULFILLMENT",
    "PACKAGES",
    "TAX",
    "PAYMENT",
    "FULFILLMENT_ORDERS",
)
FEED_TYPE_RATE = (5 / 300, 5)  # JSON_LISTINGS_FEED submissions: 5 per 5 minutes per region


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class FakeListing:
    sku: str
    product_type: str
    asin: str
    # The ``fulfillment_availability`` attribute as sellers write it (snake_case entries).
    availability: list[dict[str, Any]]
    created: datetime
    updated: datetime
    title: str = ""
    status: str = "Active"  # as the merchant listings report shows it: Active, Inactive, Incomplete


@dataclass(frozen=True)
class SeededListing:
    """One listing ``seed_listings`` made: what a catalog read should find."""

    sku: str
    quantity: int | None  # None: fulfilled by Amazon, Amazon counts it
    fulfillment_channel: str  # DEFAULT (the seller's own stock) or AMAZON_NA
    status: str


@dataclass
class FakeReport:
    report_id: str
    report_type: str
    marketplace_ids: list[str]
    created: datetime
    outcome: str  # what it will end as: DONE, FATAL or CANCELLED
    status: str = "IN_QUEUE"
    started: datetime | None = None
    ended: datetime | None = None
    document_id: str | None = None


@dataclass
class FakeOrderItem:
    sku: str
    asin: str
    item_id: str
    ordered: int
    shipped: int = 0


@dataclass
class FakeOrder:
    order_id: str
    status: str
    items: list[FakeOrderItem]
    purchased: datetime
    updated: datetime
    fulfillment_channel: str = "MFN"
    visible_from: datetime | None = None  # a late order: searches find it only from then on


@dataclass
class FakeFeed:
    feed_id: str
    feed_type: str
    marketplace_ids: list[str]
    input_document_id: str
    created: datetime
    status: str = "IN_QUEUE"
    started: datetime | None = None
    ended: datetime | None = None
    result_document_id: str | None = None


@dataclass
class _Document:
    content_type: str
    signature: str
    body: bytes | None = None
    compression: str | None = None


@dataclass
class _Injected:
    status: int
    remaining: int
    after: int = 0  # calls that pass before the failures start


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"


def _errors(status: int, code: str, message: str, details: str = "") -> _Reply:
    return _Reply(status, {"errors": [{"code": code, "message": message, "details": details}]})


class AmazonFake:
    """A threaded HTTP server standing in for the SP-API and its token endpoint. Thread-safe; start() returns self."""

    def __init__(
        self,
        *,
        seller_id: str = "A1STOCKROOMFAKE",
        marketplace_id: str = "ATVPDKIKX0DER",
        client_id: str = "amzn1.application-oa2-client.stockroom",
        client_secret: str = "fake-client-secret",
        refresh_token: str = "Atzr|fake-refresh-token",
        token_lifetime_s: float = 3600.0,
        rates: Mapping[str, tuple[float, int]] | None = None,
        settle_s: float = 2.0,
        feed_processing_s: float = 0.5,
        report_processing_s: float = 0.5,
        report_compression: str | None = "GZIP",
        host: str = "127.0.0.1",
        port: int = 0,
        feed_type_rate: tuple[float, int] = FEED_TYPE_RATE,
    ) -> None:
        self.seller_id, self.marketplace_id = seller_id, marketplace_id
        self.client_id, self.client_secret, self.refresh_token = client_id, client_secret, refresh_token
        self.token_lifetime_s = token_lifetime_s
        # getOrders vouches for completeness up to this long before the request (its LastUpdatedBefore).
        self.settle_s = settle_s
        self.feed_processing_s = feed_processing_s
        self.report_processing_s = report_processing_s
        self.report_compression = report_compression
        self.reports: dict[str, FakeReport] = {}
        self._report_failures: list[str] = []  # outcomes forced on the next reports (FATAL, CANCELLED)
        self.lock = threading.RLock()
        self.rates = {**DEFAULT_RATES, **(rates or {})}
        self._buckets = {op: RequestBucket(rate, burst) for op, (rate, burst) in self.rates.items()}
        self.feed_type_rate = feed_type_rate
        self._feed_type_bucket = RequestBucket(*feed_type_rate)
        self.outage = False  # on: every SP-API call answers 503 (Amazon down), the token endpoint too
        self._tokens: dict[str, float] = {}  # access token -> expiry (time.time())
        self.listings: dict[str, FakeListing] = {}
        self.rejections: dict[str, tuple[str, str]] = {}  # sku -> (issue code, message)
        self.orders: dict[str, FakeOrder] = {}
        self.feeds: dict[str, FakeFeed] = {}
        self._documents: dict[str, _Document] = {}
        # Page token -> (order ids left in the time window, LastUpdatedBefore, page size). The other filters
        # are not in the token: each page applies those of its own request.
        self._pages: dict[str, tuple[list[str], str | None, int]] = {}
        self._injected: dict[str, _Injected] = {}
        # A slow Amazon for tests: calls of these operations wait this long before they are answered.
        self.delays: dict[str, float] = {}
        self.request_arrived = threading.Event()  # set when a delayed call arrives
        self._timers: list[threading.Timer] = []
        self.log: list[dict[str, Any]] = []
        self.tokens_issued = 0
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{name}:{port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/auth/o2/token"

    def start(self) -> AmazonFake:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="amazon-fake", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def channel_settings(self) -> dict[str, Any]:
        """Connector settings and credentials that point a channel at this fake."""
        return {
            "settings": {
                "endpoint": self.url,
                "token_url": self.token_url,
                "seller_id": self.seller_id,
                "marketplace_id": self.marketplace_id,
            },
            "credentials": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "refresh_token": self.refresh_token,
            },
        }

    # --- control: listings --------------------------------------------------------------

    def add_listing(
        self,
        sku: str,
        quantity: int | None = 0,
        *,
        product_type: str = "PRODUCT",
        fulfillment_channel: str = "DEFAULT",
        lead_time_days: int | None = None,
        title: str = "",
        status: str = "Active",
    ) -> None:
        entry: dict[str, Any] = {"fulfillment_channel_code": fulfillment_channel}
        if quantity is not None:
            entry["quantity"] = quantity
        if lead_time_days is not None:
            entry["lead_time_to_ship_max_days"] = lead_time_days
        now = datetime.now(UTC)
        with self.lock:
            asin = "B0" + uuid.uuid5(uuid.NAMESPACE_OID, sku).hex[:8].upper()
            self.listings[sku] = FakeListing(sku, product_type, asin, [entry], now, now, title or f"Item {sku}", status)

    def seed_listings(self, count: int, *, fba: int = 0, inactive: int = 0, prefix: str = "SKU") -> list[SeededListing]:
        """``count`` listings ``<prefix>-00001``...: the first ``fba`` fulfilled by Amazon (AMAZON_NA, no
        quantity of the seller's), the next ``inactive`` Inactive with quantity 0, the others Active with
        ``index * 7 % 50``. Returns what was made, in order."""
        made = []
        for index in range(count):
            sku = f"{prefix}-{index + 1:05d}"
            if index < fba:
                seeded = SeededListing(sku, None, "AMAZON_NA", "Active")
            elif index < fba + inactive:
                seeded = SeededListing(sku, 0, "DEFAULT", "Inactive")
            else:
                seeded = SeededListing(sku, index * 7 % 50, "DEFAULT", "Active")
            self.add_listing(
                sku,
                seeded.quantity,
                fulfillment_channel=seeded.fulfillment_channel,
                title=f"Item {sku} \u2013 blue",
                status=seeded.status,
            )
            made.append(seeded)
        return made

    def fail_reports(self, outcome: str = "FATAL", count: int = 1) -> None:
        """The next ``count`` reports end ``FATAL`` (or ``CANCELLED``) instead of DONE."""
        with self.lock:
            self._report_failures.extend([outcome] * count)

    def quantity(self, sku: str, channel: str = "DEFAULT") -> int | None:
        """What the listing offers in this fulfilment channel (None: no such listing or channel)."""
        with self.lock:
            listing = self.listings.get(sku)
            if listing is None:
                return None
            for entry in listing.availability:
                if entry.get("fulfillment_channel_code") == channel:
                    return entry.get("quantity")
            return None

    def availability(self, sku: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(entry) for entry in self.listings[sku].availability]

    def set_quantity(self, sku: str, quantity: int) -> None:
        """A hand edit in Seller Central."""
        with self.lock:
            self._set_default_quantity(self.listings[sku], quantity)

    def reject(
        self,
        sku: str,
        message: str = "The listing is not eligible for quantity updates.",
        code: str = "LISTING_BLOCKED",
    ) -> None:
        """Answer INVALID with this issue to every submission for the SKU, until ``accept``."""
        with self.lock:
            self.rejections[sku] = (code, message)

    def accept(self, sku: str) -> None:
        with self.lock:
            self.rejections.pop(sku, None)

    # --- control: tokens, limits, failures ------------------------------------------------

    def expire_tokens(self) -> None:
        """Every access token issued so far is expired from now on."""
        with self.lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def set_rate(self, operation: str, rate: float, burst: int) -> None:
        with self.lock:
            self.rates[operation] = (rate, burst)
            self._buckets[operation] = RequestBucket(rate, burst)

    def fail_next(self, operation: str, status: int = 503, count: int = 1, *, after: int = 0) -> None:
        """After ``after`` more calls pass, the next ``count`` calls of the operation get this status."""
        with self.lock:
            self._injected[operation] = _Injected(status, count, after)

    def requests(self, operation: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.log if operation is None or r["operation"] == operation]

    def throttled(self, operation: str | None = None) -> int:
        return sum(1 for r in self.requests(operation) if r["status"] == 429)

    # --- control: orders ----------------------------------------------------------------

    def create_order(
        self,
        lines: Sequence[tuple[str, int]],
        *,
        status: str = "Unshipped",
        order_id: str | None = None,
        fulfillment_channel: str = "MFN",
        late_s: float = 0.0,
    ) -> str:
        """A buyer orders these (seller SKU, quantity) lines; the listings' quantities go down as on Amazon
        (not for ``AFN``: Amazon ships from its own stock). ``late_s``: searches see it only that much later."""
        if status not in ORDER_STATUSES:
            raise ValueError(f"unknown order status {status!r}")
        now = datetime.now(UTC)
        with self.lock:
            order_id = order_id or _order_number()
            items = []
            for index, (sku, quantity) in enumerate(lines):
                listing = self.listings.get(sku)
                asin = listing.asin if listing else "B000000000"
                items.append(FakeOrderItem(sku, asin, f"{order_id.replace('-', '')[-8:]}{index:06d}", quantity))
                if listing is not None and status != "Canceled" and fulfillment_channel == "MFN":
                    current = self.quantity(sku) or 0
                    self._set_default_quantity(listing, max(0, current - quantity))
            self.orders[order_id] = FakeOrder(
                order_id,
                status,
                items,
                now,
                now,
                fulfillment_channel,
                now + timedelta(seconds=late_s) if late_s else None,
            )
        return order_id

    def change_order(self, order_id: str, sku: str, quantity: int) -> None:
        """The line of this SKU now orders ``quantity`` units (0: the line is cancelled); the listing follows."""
        with self.lock:
            order = self.orders[order_id]
            item = next(i for i in order.items if i.sku == sku)
            quantity = max(item.shipped, quantity)
            listing = self.listings.get(sku)
            if listing is not None and order.status != "Canceled" and order.fulfillment_channel == "MFN":
                self._set_default_quantity(listing, max(0, (self.quantity(sku) or 0) + item.ordered - quantity))
            item.ordered = quantity
            if all(i.ordered == 0 for i in order.items):
                order.status = "Canceled"
            elif order.status == "PartiallyShipped" and all(i.shipped >= i.ordered for i in order.items):
                order.status = "Shipped"
            order.updated = datetime.now(UTC)

    def delete_order(self, order_id: str) -> None:
        """Amazon no longer has the order: getOrder answers 404."""
        with self.lock:
            self.orders.pop(order_id, None)

    def set_outage(self, on: bool) -> None:
        with self.lock:
            self.outage = on

    def feed_submissions(self) -> list[float]:
        """When each JSON_LISTINGS_FEED was accepted (time.time())."""
        return [r["at"] for r in self.requests("createFeed") if r["status"] == 202]

    def set_order_status(self, order_id: str, status: str) -> None:
        if status not in ORDER_STATUSES:
            raise ValueError(f"unknown order status {status!r}")
        with self.lock:
            order = self.orders[order_id]
            order.status = status
            order.updated = datetime.now(UTC)

    def ship_order(self, order_id: str, shipped: Mapping[str, int] | None = None) -> None:
        """Ship every unit (``shipped`` None) or these units per SKU; the status follows."""
        with self.lock:
            order = self.orders[order_id]
            for item in order.items:
                if shipped is None:
                    item.shipped = item.ordered
                elif item.sku in shipped:
                    item.shipped = min(item.ordered, item.shipped + shipped[item.sku])
            done = all(item.shipped >= item.ordered for item in order.items)
            order.status = "Shipped" if done else "PartiallyShipped"
            order.updated = datetime.now(UTC)

    def cancel_order(self, order_id: str) -> None:
        """The buyer or Amazon cancels: the units go back on offer."""
        with self.lock:
            order = self.orders[order_id]
            if order.status != "Canceled":
                for item in order.items:
                    listing = self.listings.get(item.sku)
                    if listing is not None:
                        self._set_default_quantity(
                            listing, (self.quantity(item.sku) or 0) + item.ordered - item.shipped
                        )
            order.status = "Canceled"
            order.updated = datetime.now(UTC)

    def order(self, order_id: str) -> dict[str, Any]:
        with self.lock:
            return self._order_json(self.orders[order_id])

    def process_feeds(self) -> None:
        """Process every feed still queued now (tests that do not want to wait)."""
        with self.lock:
            waiting = [f.feed_id for f in self.feeds.values() if f.status in ("IN_QUEUE", "IN_PROGRESS")]
        for feed_id in waiting:
            self._process_feed(feed_id)

    # --- internals: state ---------------------------------------------------------------

    def _set_default_quantity(self, listing: FakeListing, quantity: int) -> None:
        for entry in listing.availability:
            if entry.get("fulfillment_channel_code") == "DEFAULT":
                entry["quantity"] = quantity
                break
        else:
            listing.availability.append({"fulfillment_channel_code": "DEFAULT", "quantity": quantity})
        listing.updated = datetime.now(UTC)

    def _submission_issues(self, sku: str, product_type: Any, patches: Any) -> list[dict[str, Any]]:
        """Why a patch submission is INVALID (empty: it is valid). Caller holds the lock."""
        listing = self.listings.get(sku)
        if listing is None:
            return [_issue("SKU_NOT_FOUND", f"No listing with SKU '{sku}' exists for this seller and marketplace.")]
        if sku in self.rejections:
            code, message = self.rejections[sku]
            return [_issue(code, message)]
        if not isinstance(product_type, str) or not product_type:
            return [_issue("MISSING_PRODUCT_TYPE", "'productType' is required but not supplied.")]
        if product_type != listing.product_type:
            return [
                _issue(
                    "PRODUCT_TYPE_MISMATCH",
                    f"The product type '{product_type}' does not match the listing's product type "
                    f"'{listing.product_type}'.",
                )
            ]
        issues: list[dict[str, Any]] = []
        for patch in patches:
            if not isinstance(patch, dict) or patch.get("op") not in ("add", "replace", "merge", "delete"):
                issues.append(_issue("INVALID_PATCH", "Each patch needs an 'op' of add, replace, merge or delete."))
                continue
            path = patch.get("path")
            if path != "/attributes/fulfillment_availability":
                if not isinstance(path, str) or not path.startswith("/attributes/"):
                    issues.append(_issue("INVALID_PATCH", f"'{path}' is not a listing attribute path."))
                continue
            if patch["op"] == "delete":
                continue
            value = patch.get("value")
            if not isinstance(value, list) or not value:
                issues.append(_issue("INVALID_ATTRIBUTE", "'fulfillment_availability' needs at least one value.", path))
                continue
            for entry in value:
                channel_code = entry.get("fulfillment_channel_code") if isinstance(entry, dict) else None
                if not isinstance(channel_code, str) or not channel_code:
                    issues.append(
                        _issue("INVALID_ATTRIBUTE", "'fulfillment_channel_code' is required but not supplied.", path)
                    )
                    continue
                quantity = entry.get("quantity")
                if quantity is not None and (
                    isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0
                ):
                    issues.append(
                        _issue(
                            "INVALID_ATTRIBUTE",
                            f"'quantity' must be a whole number of at least 0, not {quantity!r}.",
                            path,
                        )
                    )
        return issues

    def _apply(self, sku: str, patches: list[dict[str, Any]]) -> None:
        """Apply a valid submission. Caller holds the lock."""
        listing = self.listings[sku]
        for patch in patches:
            if patch.get("path") != "/attributes/fulfillment_availability":
                continue
            op = patch["op"]
            if op == "delete":
                listing.availability = []
            elif op in ("add", "replace"):
                listing.availability = [dict(entry) for entry in patch["value"]]
            else:  # merge: only the given fields of the entries with the same channel code change
                for entry in patch["value"]:
                    for current in listing.availability:
                        if current.get("fulfillment_channel_code") == entry["fulfillment_channel_code"]:
                            current.update(entry)
                            break
                    else:
                        listing.availability.append(dict(entry))
        listing.updated = datetime.now(UTC)

    def _listing_json(self, listing: FakeListing, included: list[str]) -> dict[str, Any]:
        item: dict[str, Any] = {"sku": listing.sku}
        if "summaries" in included:
            item["summaries"] = [
                {
                    "marketplaceId": self.marketplace_id,
                    "asin": listing.asin,
                    "productType": listing.product_type,
                    "conditionType": "new_new",
                    "status": ["BUYABLE", "DISCOVERABLE"],
                    "itemName": listing.title,
                    "createdDate": iso(listing.created),
                    "lastUpdatedDate": iso(listing.updated),
                }
            ]
        if "attributes" in included:
            item["attributes"] = {"fulfillment_availability": [dict(e) for e in listing.availability]}
        if "issues" in included:
            item["issues"] = []
        if "fulfillmentAvailability" in included:
            item["fulfillmentAvailability"] = [
                {
                    "fulfillmentChannelCode": e["fulfillment_channel_code"],
                    **({"quantity": e["quantity"]} if "quantity" in e else {}),
                }
                for e in listing.availability
            ]
        if "productTypes" in included:
            item["productTypes"] = [{"marketplaceId": self.marketplace_id, "productType": listing.product_type}]
        return item

    def _order_json(self, order: FakeOrder) -> dict[str, Any]:
        shipped = sum(item.shipped for item in order.items)
        ordered = sum(item.ordered for item in order.items)
        return {
            "AmazonOrderId": order.order_id,
            "PurchaseDate": iso(order.purchased),
            "LastUpdateDate": iso(order.updated),
            "OrderStatus": order.status,
            "FulfillmentChannel": order.fulfillment_channel,
            "SalesChannel": "Amazon.com",
            "MarketplaceId": self.marketplace_id,
            "NumberOfItemsShipped": shipped,
            "NumberOfItemsUnshipped": 0 if order.status == "Canceled" else ordered - shipped,
            "OrderType": "StandardOrder",
            "IsBusinessOrder": False,
            "IsPrime": False,
            "IsPremiumOrder": False,
            "IsGlobalExpressEnabled": False,
            "IsSoldByAB": False,
            "IsISPU": False,
            "IsAccessPointOrder": False,
        }

    def _order_2026(self, order: FakeOrder, included: set[str]) -> dict[str, Any]:
        """An Orders 2026-01-01 ``Order``; FULFILLMENT in ``includedData`` adds the statuses and shipped counts."""
        amazon = order.fulfillment_channel == "AFN"
        body: dict[str, Any] = {
            "orderId": order.order_id,
            "createdTime": iso(order.purchased),
            "lastUpdatedTime": iso(order.updated),
            "programs": [],
            "salesChannel": {
                "channelName": "AMAZON",
                "marketplaceId": self.marketplace_id,
                "marketplaceName": "Amazon.com",
            },
            "orderItems": [],
        }
        if "FULFILLMENT" in included:
            body["fulfillment"] = {
                "fulfillmentStatus": FULFILLMENT_STATUS[order.status],
                "fulfilledBy": "AMAZON" if amazon else "MERCHANT",
                "fulfillmentServiceLevel": "STANDARD",
            }
        for item in order.items:
            entry: dict[str, Any] = {
                "orderItemId": item.item_id,
                "quantityOrdered": item.ordered,
                "product": {"asin": item.asin, "title": f"Item {item.sku}", "sellerSku": item.sku},
            }
            if "FULFILLMENT" in included:
                entry["fulfillment"] = {
                    "quantityFulfilled": item.shipped,
                    "quantityUnfulfilled": 0 if order.status == "Canceled" else item.ordered - item.shipped,
                }
            body["orderItems"].append(entry)
        return body

    def _process_feed(self, feed_id: str) -> None:
        with self.lock:
            feed = self.feeds[feed_id]
            if feed.status not in ("IN_QUEUE", "IN_PROGRESS"):
                return
            feed.started = feed.started or datetime.now(UTC)
            document = self._documents.get(feed.input_document_id)
            issues: list[dict[str, Any]] = []
            processed = accepted = invalid = 0
            try:
                content: Any = json.loads(document.body or b"") if document else None
                header, messages = content["header"], content["messages"]
                if header.get("sellerId") != self.seller_id or header.get("version") != "2.0":
                    raise ValueError("the header names another seller or an unknown version")
                if not isinstance(messages, list) or not 1 <= len(messages) <= 25000:
                    raise ValueError("a feed carries 1 to 25000 messages")
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                feed.status = "FATAL"
                report = {
                    "header": {"sellerId": self.seller_id, "version": "2.0", "feedId": feed_id},
                    "issues": [{"code": "FATAL", "severity": "ERROR", "message": f"The feed could not be read: {err}"}],
                    "summary": {
                        "errors": 1,
                        "warnings": 0,
                        "messagesProcessed": 0,
                        "messagesAccepted": 0,
                        "messagesInvalid": 0,
                    },
                }
            else:
                for message in messages:
                    processed += 1
                    message_id, sku = message.get("messageId"), str(message.get("sku", ""))
                    if message.get("operationType") != "PATCH":
                        found = [_issue("UNSUPPORTED_OPERATION", "This fake processes PATCH messages only.")]
                    else:
                        found = self._submission_issues(sku, message.get("productType"), message.get("patches") or [])
                    if found:
                        invalid += 1
                        for issue in found:
                            entry = {
                                "messageId": message_id,
                                "sku": sku,
                                "code": issue["code"],
                                "severity": "ERROR",
                                "message": issue["message"],
                            }
                            if issue.get("attributeNames"):
                                entry["attributeName"] = issue["attributeNames"][0]
                            issues.append(entry)
                    else:
                        accepted += 1
                        self._apply(sku, message["patches"])
                feed.status = "DONE"
                report = {
                    "header": {"sellerId": self.seller_id, "version": "2.0", "feedId": feed_id},
                    "issues": issues,
                    "summary": {
                        "errors": len(issues),
                        "warnings": 0,
                        "messagesProcessed": processed,
                        "messagesAccepted": accepted,
                        "messagesInvalid": invalid,
                    },
                }
            result_id = "amzn1.tortuga.4.na." + uuid.uuid4().hex
            self._documents[result_id] = _Document(
                "application/json", secrets.token_hex(8), gzip.compress(json.dumps(report).encode()), "GZIP"
            )
            feed.result_document_id = result_id
            feed.ended = datetime.now(UTC)

    # --- the HTTP side -------------------------------------------------------------------

    def _admit(self, operation: str) -> _Reply | None:
        """None when the call may proceed; else the throttle or injected failure."""
        with self.lock:
            injected = self._injected.get(operation)
            if injected is not None and injected.after > 0:
                injected.after -= 1
            elif injected is not None:
                injected.remaining -= 1
                if injected.remaining <= 0:
                    del self._injected[operation]
                return _errors(
                    injected.status,
                    "InternalFailure" if injected.status < 503 else "ServiceUnavailable",
                    "We encountered an internal error. Please try again.",
                )
            if self._buckets[operation].take() > 0:
                return _errors(429, "QuotaExceeded", "You exceeded your quota for the requested resource.")
        return None

    def _authorize(self, headers: Mapping[str, str]) -> _Reply | None:
        token = headers.get("x-amz-access-token") or ""
        with self.lock:
            expiry = self._tokens.get(token)
        if expiry is None:
            return _errors(
                403,
                "Unauthorized",
                "Access to requested resource is denied.",
                "The access token you provided is revoked, malformed or invalid.",
            )
        if expiry <= time.time():
            return _errors(403, "Unauthorized", "The access token you provided has expired.")
        return None

    def _route(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        routes = [
            ("GET", rf"/listings/{LISTINGS_VERSION}/items/(?P<seller>[^/]+)/(?P<sku>[^/]+)", "getListingsItem"),
            ("PATCH", rf"/listings/{LISTINGS_VERSION}/items/(?P<seller>[^/]+)/(?P<sku>[^/]+)", "patchListingsItem"),
            ("GET", rf"/listings/{LISTINGS_VERSION}/items/(?P<seller>[^/]+)", "searchListingsItems"),
            ("POST", rf"/feeds/{FEEDS_VERSION}/documents", "createFeedDocument"),
            ("GET", rf"/feeds/{FEEDS_VERSION}/documents/(?P<document>[^/]+)", "getFeedDocument"),
            ("POST", rf"/feeds/{FEEDS_VERSION}/feeds", "createFeed"),
            ("GET", rf"/feeds/{FEEDS_VERSION}/feeds/(?P<feed>[^/]+)", "getFeed"),
            ("POST", rf"/reports/{REPORTS_VERSION}/reports", "createReport"),
            ("GET", rf"/reports/{REPORTS_VERSION}/reports/(?P<report>[^/]+)", "getReport"),
            ("GET", rf"/reports/{REPORTS_VERSION}/documents/(?P<document>[^/]+)", "getReportDocument"),
            ("GET", rf"/orders/{ORDERS_2026}/orders", "searchOrders"),
            ("GET", rf"/orders/{ORDERS_2026}/orders/(?P<order>[^/]+)", "getOrder"),
            ("GET", rf"/orders/{ORDERS_VERSION}/orders", "getOrders"),
            ("GET", rf"/orders/{ORDERS_VERSION}/orders/(?P<order_v0>[^/]+)", "getOrder"),
            ("GET", rf"/orders/{ORDERS_VERSION}/orders/(?P<order>[^/]+)/orderItems", "getOrderItems"),
            ("GET", r"/sellers/v1/marketplaceParticipations", "getMarketplaceParticipations"),
        ]
        for route_method, pattern, operation in routes:
            match = re.fullmatch(pattern, path)
            if match and route_method == method:
                return operation, {k: unquote(v) for k, v in match.groupdict().items()}
        return None

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        parts = urlsplit(target)
        query = {k: v for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = parts.path
        if path == "/auth/o2/token" and method == "POST" and self.outage:
            reply, operation = _Reply(503, {"error": "temporarily_unavailable"}), "token"
        elif path == "/auth/o2/token" and method == "POST":
            reply, operation = self._token(headers, body), "token"
        elif path.startswith("/_documents/"):
            reply, operation = (
                self._document(method, path.removeprefix("/_documents/"), query, headers, body),
                "document",
            )
        elif path.startswith("/_control/"):
            reply, operation = self._control(method, path.removeprefix("/_control/"), body), "control"
        else:
            routed = self._route(method, path)
            if self.outage:
                reply = _errors(503, "ServiceUnavailable", "Service temporarily unavailable.")
                operation = routed[0] if routed else "unknown"
            elif routed is None:
                reply, operation = _errors(404, "NotFound", "Resource not found."), "unknown"
            else:
                operation, args = routed
                delay = self.delays.get(operation, 0.0)
                if delay:
                    self.request_arrived.set()
                    time.sleep(delay)
                reply = self._authorize(headers) or self._admit(operation) or self._call(operation, args, query, body)
                if reply.status != 403 and reply.status < 500:  # as Amazon's models list the header
                    reply.headers.setdefault("x-amzn-RateLimit-Limit", _rate_header(self.rates[operation][0]))
        reply.headers.setdefault("x-amzn-RequestId", str(uuid.uuid4()))
        try:
            sent = json.loads(body) if body and operation not in ("token", "document") else None
        except ValueError:
            sent = None
        with self.lock:
            self.log.append(
                {
                    "at": time.time(),
                    "method": method,
                    "path": path,
                    "query": query,
                    "operation": operation,
                    "status": reply.status,
                    "body": sent,
                }
            )
        return reply

    def _call(self, operation: str, args: dict[str, str], query: dict[str, list[str]], body: bytes) -> _Reply:
        if "seller" in args and args["seller"] != self.seller_id:
            return _errors(
                403,
                "Unauthorized",
                "Access to requested resource is denied.",
                "The seller is not the one that authorized this application.",
            )
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            return _errors(400, "InvalidInput", "The request body is not JSON.")
        handler = getattr(self, f"_op_{operation}")
        reply: _Reply = handler(args, query, payload)
        return reply

    def _marketplaces_ok(self, query: dict[str, list[str]], name: str = "marketplaceIds") -> _Reply | None:
        values = [v for raw in query.get(name, []) for v in raw.split(",") if v]
        if not values:
            return _errors(400, "InvalidInput", f"Missing required '{name}'.")
        if values != [self.marketplace_id]:
            return _errors(400, "InvalidInput", f"Invalid '{name}': the seller does not sell in {','.join(values)}.")
        return None

    # Listings Items -----------------------------------------------------------------------

    def _op_getListingsItem(self, args: dict[str, str], query: dict[str, list[str]], _: Any) -> _Reply:
        if bad := self._marketplaces_ok(query):
            return bad
        included = _csv(query, "includedData") or ["summaries"]
        with self.lock:
            listing = self.listings.get(args["sku"])
            if listing is None:
                return _errors(404, "NOT_FOUND", f"SKU '{args['sku']}' not found in marketplace {self.marketplace_id}")
            return _Reply(200, self._listing_json(listing, included))

    def _op_searchListingsItems(self, args: dict[str, str], query: dict[str, list[str]], _: Any) -> _Reply:
        if bad := self._marketplaces_ok(query):
            return bad
        included = _csv(query, "includedData") or ["summaries"]
        identifiers, kind = _csv(query, "identifiers"), (query.get("identifiersType") or [""])[0]
        if identifiers and kind != "SKU":
            return _errors(400, "InvalidInput", "This fake searches by identifiersType=SKU only.")
        if len(identifiers) > 20:
            return _errors(400, "InvalidInput", "'identifiers' accepts at most 20 values.")
        try:
            page_size = int((query.get("pageSize") or ["10"])[0])
            start = int((query.get("pageToken") or ["0"])[0])
        except ValueError:
            return _errors(400, "InvalidInput", "Invalid 'pageSize' or 'pageToken'.")
        if not 1 <= page_size <= 20:
            return _errors(400, "InvalidInput", "'pageSize' must be 1 to 20.")
        with self.lock:
            found = (
                [self.listings[s] for s in identifiers if s in self.listings]
                if identifiers
                else list(self.listings.values())
            )
            page = found[start : start + page_size]
            result: dict[str, Any] = {
                "numberOfResults": len(found),
                "pagination": {"nextToken": str(start + page_size)} if start + page_size < len(found) else {},
                "items": [self._listing_json(listing, included) for listing in page],
            }
        return _Reply(200, result)

    def _op_patchListingsItem(self, args: dict[str, str], query: dict[str, list[str]], payload: Any) -> _Reply:
        if bad := self._marketplaces_ok(query):
            return bad
        if (
            not isinstance(payload, dict)
            or "productType" not in payload
            or not isinstance(payload.get("patches"), list)
            or not payload["patches"]
        ):
            return _errors(400, "InvalidInput", "The body needs 'productType' and at least one patch in 'patches'.")
        sku, preview = args["sku"], (query.get("mode") or [""])[0] == "VALIDATION_PREVIEW"
        with self.lock:
            issues = self._submission_issues(sku, payload["productType"], payload["patches"])
            if not issues and not preview:
                self._apply(sku, payload["patches"])
        status = "INVALID" if issues else ("VALID" if preview else "ACCEPTED")
        return _Reply(200, {"sku": sku, "status": status, "submissionId": uuid.uuid4().hex, "issues": issues})

    # Feeds --------------------------------------------------------------------------------

    def _op_createFeedDocument(self, args: dict[str, str], query: dict[str, list[str]], payload: Any) -> _Reply:
        if not isinstance(payload, dict) or not isinstance(payload.get("contentType"), str):
            return _errors(400, "InvalidInput", "'contentType' is required.")
        document_id = "amzn1.tortuga.4.na." + uuid.uuid4().hex
        signature = secrets.token_hex(8)
        with self.lock:
            self._documents[document_id] = _Document(payload["contentType"], signature)
        return _Reply(
            201,
            {"feedDocumentId": document_id, "url": f"{self.url}/_documents/{document_id}?X-Amz-Signature={signature}"},
        )

    def _op_createFeed(self, args: dict[str, str], query: dict[str, list[str]], payload: Any) -> _Reply:
        if not isinstance(payload, dict) or not all(
            k in payload for k in ("feedType", "marketplaceIds", "inputFeedDocumentId")
        ):
            return _errors(400, "InvalidInput", "'feedType', 'marketplaceIds' and 'inputFeedDocumentId' are required.")
        if payload["feedType"] != "JSON_LISTINGS_FEED":
            return _errors(
                400, "InvalidInput", f"This fake processes JSON_LISTINGS_FEED only, not {payload['feedType']}."
            )
        if payload["marketplaceIds"] != [self.marketplace_id]:
            return _errors(400, "InvalidInput", "Invalid 'marketplaceIds'.")
        with self.lock:
            document = self._documents.get(payload["inputFeedDocumentId"])
            if document is None or document.body is None:
                return _errors(400, "InvalidInput", "The feed document does not exist or was not uploaded.")
            if self._feed_type_bucket.take() > 0:
                return _errors(429, "QuotaExceeded", "You exceeded your quota for JSON_LISTINGS_FEED submissions.")
            feed_id = str(50000000000 + len(self.feeds) + 1)
            self.feeds[feed_id] = FakeFeed(
                feed_id, "JSON_LISTINGS_FEED", [self.marketplace_id], payload["inputFeedDocumentId"], datetime.now(UTC)
            )
            timer = threading.Timer(self.feed_processing_s, self._process_feed, args=(feed_id,))
            timer.daemon = True
            self._timers.append(timer)
        timer.start()
        return _Reply(202, {"feedId": feed_id})

    def _op_getFeed(self, args: dict[str, str], query: dict[str, list[str]], _: Any) -> _Reply:
        with self.lock:
            feed = self.feeds.get(args["feed"])
            if feed is None:
                return _errors(404, "NotFound", f"Feed {args['feed']} not found.")
            result: dict[str, Any] = {
                "feedId": feed.feed_id,
                "feedType": feed.feed_type,
                "marketplaceIds": feed.marketplace_ids,
                "createdTime": iso(feed.created),
                "processingStatus": feed.status,
            }
            if feed.started:
                result["processingStartTime"] = iso(feed.started)
            if feed.ended:
                result["processingEndTime"] = iso(feed.ended)
            if feed.result_document_id:
                result["resultFeedDocumentId"] = feed.result_document_id
        return _Reply(200, result)

    def _op_getFeedDocument(self, args: dict[str, str], query: dict[str, list[str]], _: Any) -> _Reply:
        with self.lock:
            document = self._documents.get(args["document"])
            if document is None or document.body is None:
                return _errors(404, "NotFound", f"Feed document {args['document']} not found.")
            result = {
                "feedDocumentId": args["document"],
                "url": f"{self.url}/_documents/{args['document']}?X-Amz-Signature={document.signature}",
            }
            if document.compression:
                result["compressionAlgorithm"] = document.compression
        return _Reply(200, result)

    def _document(
        self, method: str, document_id: str, query: dict[str, list[str]], headers: Mapping[str, str], body: bytes
    ) -> _Reply:
        """The presigned storage URLs: the signature in the query is the only credential."""
        with self.lock:
            document = self._documents.get(document_id)
            if document is None or (query.get("X-Amz-Signature") or [""])[0] != document.signature:
                return _Reply(
                    403, raw=b"<Error><Code>SignatureDoesNotMatch</Code></Error>", content_type="application/xml"
                )
            if method == "PUT":
                if headers.get("content-type", "") != document.content_type:
                    return _Reply(
                        403, raw=b"<Error><Code>SignatureDoesNotMatch</Code></Error>", content_type="application/xml"
                    )
                document.body = body
                return _Reply(200, raw=b"")
            if method == "GET" and document.body is not None:
                return _Reply(200, raw=document.body, content_type=document.content_type)
        return _Reply(404, raw=b"<Error><Code>NoSuchKey</Code></Error>", content_type="application/xml")

    # Reports -------------------------------------------------------------------------------

    def _op_createReport(self, args: dict[str, str], query: dict[str, list[str]], payload: Any) -> _Reply:
        if not isinstance(payload, dict) or not payload.get("reportType"):
            return _errors(400, "InvalidInput", "Missing required 'reportType'.")
        marketplaces = payload.get("marketplaceIds")
        if not isinstance(marketplaces, list) or not marketplaces:
            return _errors(400, "InvalidInput", "Missing required 'marketplaceIds'.")
        if marketplaces != [self.marketplace_id]:
            return _errors(
                400, "InvalidInput", f"Invalid 'marketplaceIds': the seller does not sell in {marketplaces}."
            )
        if payload["reportType"] != MERCHANT_LISTINGS:
            return _errors(400, "InvalidInput", f"This fake makes {MERCHANT_LISTINGS} reports only.")
        with self.lock:
            report_id = str(60000000000 + len(self.reports) + 1)
            outcome = self._report_failures.pop(0) if self._report_failures else "DONE"
            self.reports[report_id] = FakeReport(
                report_id, str(payload["reportType"]), list(marketplaces), datetime.now(UTC), outcome
            )
            timers = [
                threading.Timer(self.report_processing_s / 2, self._start_report, args=(report_id,)),
                threading.Timer(self.report_processing_s, self._finish_report, args=(report_id,)),
            ]
            for timer in timers:
                timer.daemon = True
                self._timers.append(timer)
        for timer in timers:
            timer.start()
        return _Reply(202, {"reportId": report_id})

    def _start_report(self, report_id: str) -> None:
        with self.lock:
            report = self.reports[report_id]
            if report.status == "IN_QUEUE":
                report.status, report.started = "IN_PROGRESS", datetime.now(UTC)

    def _finish_report(self, report_id: str) -> None:
        with self.lock:
            report = self.reports[report_id]
            if report.status not in ("IN_QUEUE", "IN_PROGRESS"):
                return
            report.started = report.started or datetime.now(UTC)
            report.ended = datetime.now(UTC)
            outcome = report.outcome
            if outcome == "DONE" and not self.listings:
                outcome = "CANCELLED"  # Amazon cancels a report that has no data
            document_id = "amzn1.spdoc.1.4.na." + uuid.uuid4().hex
            if outcome == "FATAL":
                error = {"errorDetails": "The report could not be generated: an internal error occurred."}
                self._documents[document_id] = _Document(
                    "application/json", secrets.token_hex(8), json.dumps(error).encode()
                )
                report.document_id = document_id
            elif outcome == "DONE":
                text = self._listings_report()
                body = text.encode("cp1252", errors="replace")
                compression = self.report_compression
                if compression == "GZIP":
                    body = gzip.compress(body)
                self._documents[document_id] = _Document(
                    "text/plain;charset=Cp1252", secrets.token_hex(8), body, compression
                )
                report.document_id = document_id
            report.status = outcome

    def _listings_report(self) -> str:
        """GET_MERCHANT_LISTINGS_ALL_DATA: a header row, then one tab-separated row per listing."""
        lines = ["\t".join(LISTING_COLUMNS)]
        for listing in self.listings.values():
            entry = listing.availability[0] if listing.availability else {}
            channel = str(entry.get("fulfillment_channel_code") or "DEFAULT")
            quantity = entry.get("quantity")
            row = dict.fromkeys(LISTING_COLUMNS, "")
            row.update(
                {
                    "item-name": listing.title.replace("\t", " "),
                    "listing-id": uuid.uuid5(uuid.NAMESPACE_URL, listing.sku).hex[:10].upper(),
                    "seller-sku": listing.sku,
                    "price": "19.99",
                    # Amazon leaves the seller's quantity empty for listings it fulfils itself.
                    "quantity": "" if channel != "DEFAULT" or quantity is None else str(quantity),
                    "open-date": listing.created.strftime("%Y-%m-%d %H:%M:%S UTC"),
                    "item-is-marketplace": "y",
                    "product-id-type": "1",
                    "item-condition": "11",
                    "asin1": listing.asin,
                    "product-id": listing.asin,
                    "pending-quantity": "0",
                    "fulfillment-channel": channel,
                    "merchant-shipping-group": "Migrated Template" if channel == "DEFAULT" else "",
                    "status": listing.status,
                }
            )
            lines.append("\t".join(row[column] for column in LISTING_COLUMNS))
        return "\n".join(lines) + "\n"

    def _op_getReport(self, args: dict[str, str], query: dict[str, list[str]], _: Any) -> _Reply:
        with self.lock:
            report = self.reports.get(args["report"])
            if report is None:
                return _errors(404, "NotFound", f"Report {args['report']} not found.")
            result: dict[str, Any] = {
                "reportId": report.report_id,
                "reportType": report.report_type,
                "marketplaceIds": report.marketplace_ids,
                "createdTime": iso(report.created),
                "processingStatus": report.status,
            }
            if report.started:
                result["processingStartTime"] = iso(report.started)
            if report.ended:
                result["processingEndTime"] = iso(report.ended)
            if report.document_id:
                result["reportDocumentId"] = report.document_id
        return _Reply(200, result)

    def _op_getReportDocument(self, args: dict[str, str], query: dict[str, list[str]], _: Any) -> _Reply:
        with self.lock:
            document = self._documents.get(args["document"])
            if document is None or document.body is None or not args["document"].startswith("amzn1.spdoc."):
                return _errors(404, "NotFound", f"Report document {args['document']} not found.")
            result = {
                "reportDocumentId": args["document"],
                "url": f"{self.url}/_documents/{args['document']}?X-Amz-Signature={document.signature}",
            }
            if document.compression:
                result["compressionAlgorithm"] = document.compression
        return _Reply(200, result)

    # Orders and sellers --------------------------------------------------------------------

    def _op_getOrders(self, args: dict[str, str], query: dict[str, list[str]], _: Any) -> _Reply:
        if bad := self._marketplaces_ok(query, "MarketplaceIds"):
            return bad
        reply = self._orders_page(query, v0=True)
        if reply.status != 200:
            return reply
        page, token, before = reply.body
        payload: dict[str, Any] = {"Orders": [self._order_json(o) for o in page]}
        if token:
            payload["NextToken"] = token
        if before:
            payload["LastUpdatedBefore"] = before
        return _Reply(200, {"payload": payload})

    def _op_searchOrders(self, args: dict[str, str], query: dict[str, list[str]], _: Any) -> _Reply:
        bad = self._included_bad(query)
        if bad:
            return bad
        marketplaces = _csv(query, "marketplaceIds")
        if marketplaces and marketplaces != [self.marketplace_id]:
            return _errors(400, "InvalidInput", "Invalid 'marketplaceIds'.")
        reply = self._orders_page(query, v0=False)
        if reply.status != 200:
            return reply
        page, token, before = reply.body
        included = set(_csv(query, "includedData"))
        body: dict[str, Any] = {"orders": [self._order_2026(o, included) for o in page]}
        if token:
            body["pagination"] = {"nextToken": token}
        if before:
            body["lastUpdatedBefore"] = before
        return _Reply(200, body)

    def _op_getOrder(self, args: dict[str, str], query: dict[str, list[str]], _: Any) -> _Reply:
        order_id = args.get("order_v0") or args.get("order") or ""
        if "order" in args and (bad := self._included_bad(query)):
            return bad
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                return _errors(404, "NotFound", f"Order {order_id} not found.")
            if "order_v0" in args:
                return _Reply(200, {"payload": self._order_json(order)})
            return _Reply(200, {"order": self._order_2026(order, set(_csv(query, "includedData")))})

    @staticmethod
    def _included_bad(query: dict[str, list[str]]) -> _Reply | None:
        unknown = sorted(set(_csv(query, "includedData")) - set(INCLUDED_DATA))
        if unknown:
            return _errors(400, "InvalidInput", f"Invalid 'includedData': {','.join(unknown)}.")
        return None

    def _orders_page(self, query: dict[str, list[str]], *, v0: bool) -> _Reply:
        """One page of a search: body (orders, next token, LastUpdatedBefore), or the error reply."""
        now = datetime.now(UTC)
        names = (
            ("NextToken", "MaxResultsPerPage", "OrderStatuses", "FulfillmentChannels")
            if v0
            else ("paginationToken", "maxResultsPerPage", "fulfillmentStatuses", "fulfilledBy")
        )
        token = (query.get(names[0]) or [""])[0]
        with self.lock:
            if token:
                if token not in self._pages:
                    return _errors(400, "InvalidInput", f"Invalid {names[0]}.")
                ids, before, size = self._pages.pop(token)
            else:
                try:
                    size = int((query.get(names[1]) or ["100"])[0])
                except ValueError:
                    size = 0
                if not 1 <= size <= 100:
                    return _errors(400, "InvalidInput", f"'{names[1]}' must be 1 to 100.")
                try:
                    ids, before = self._select_orders(query, now, v0=v0)
                except ValueError as err:
                    return _errors(400, "InvalidInput", str(err))
            # The filters of this request (a page token does not carry them).
            statuses = set(_csv(query, names[2]))
            channels = set(_csv(query, names[3]))
            chosen: list[FakeOrder] = []
            rest = list(ids)
            while rest and len(chosen) < size:
                order = self.orders.get(rest.pop(0))
                if order is None:
                    continue
                status = order.status if v0 else FULFILLMENT_STATUS[order.status]
                party = (
                    order.fulfillment_channel
                    if v0
                    else ("AMAZON" if order.fulfillment_channel == "AFN" else "MERCHANT")
                )
                if (statuses and status not in statuses) or (channels and party not in channels):
                    continue
                chosen.append(order)
            next_token = None
            if rest:
                next_token = secrets.token_urlsafe(24)
                self._pages[next_token] = (rest, before, size)
            return _Reply(200, (chosen, next_token, before))

    def _select_orders(self, query: dict[str, list[str]], now: datetime, *, v0: bool) -> tuple[list[str], str | None]:
        """The ids of the orders in the request's time window, in order (the other filters apply per page)."""
        names = (
            ("CreatedAfter", "CreatedBefore", "LastUpdatedAfter", "LastUpdatedBefore")
            if v0
            else ("createdAfter", "createdBefore", "lastUpdatedAfter", "lastUpdatedBefore")
        )

        def moment(name: str) -> datetime | None:
            raw = (query.get(name) or [""])[0]
            if not raw:
                return None
            try:
                return parse_iso(raw)
            except ValueError:
                raise ValueError(f"'{name}' is not an ISO 8601 date-time.") from None

        created_after, created_before, updated_after, updated_before = (moment(n) for n in names)
        if (created_after is None) == (updated_after is None):
            raise ValueError(f"Exactly one of '{names[0]}' and '{names[2]}' is required.")
        latest = now - timedelta(minutes=2)
        for name, value in ((names[1], created_before), (names[3], updated_before)):
            if value is not None and value > latest:
                raise ValueError(f"'{name}' must be at least two minutes before the time of the request.")
        chosen = []
        for order in self.orders.values():
            if order.visible_from is not None and order.visible_from > now:
                continue  # a late order: not in Amazon's search yet
            if updated_after is not None and (
                order.updated < updated_after or (updated_before and order.updated > updated_before)
            ):
                continue
            if created_after is not None and (
                order.purchased < created_after or (created_before and order.purchased > created_before)
            ):
                continue
            chosen.append(order)
        chosen.sort(key=lambda o: (o.updated, o.order_id) if updated_after else (o.purchased, o.order_id))
        if updated_after is not None:
            before = iso(updated_before) if updated_before else iso(now - timedelta(seconds=self.settle_s))
        else:
            before = iso(created_before) if created_before else iso(now - timedelta(seconds=self.settle_s))
        return [o.order_id for o in chosen], before

    def _op_getOrderItems(self, args: dict[str, str], query: dict[str, list[str]], _: Any) -> _Reply:
        with self.lock:
            order = self.orders.get(args["order"])
            if order is None:
                return _errors(404, "NotFound", f"Order {args['order']} not found.")
            items = [
                {
                    "ASIN": item.asin,
                    "SellerSKU": item.sku,
                    "OrderItemId": item.item_id,
                    "Title": f"Item {item.sku}",
                    "QuantityOrdered": item.ordered,
                    "QuantityShipped": item.shipped,
                }
                for item in order.items
            ]
        return _Reply(200, {"payload": {"AmazonOrderId": order.order_id, "OrderItems": items}})

    def _op_getMarketplaceParticipations(self, args: dict[str, str], query: dict[str, list[str]], _: Any) -> _Reply:
        return _Reply(
            200,
            {
                "payload": [
                    {
                        "marketplace": {
                            "id": self.marketplace_id,
                            "name": "Amazon.com",
                            "countryCode": "US",
                            "defaultCurrencyCode": "USD",
                            "defaultLanguageCode": "en_US",
                            "domainName": "www.amazon.com",
                        },
                        "participation": {"isParticipating": True, "hasSuspendedListings": False},
                        "storeName": "Stockroom Fake Store",
                    }
                ]
            },
        )

    # Login with Amazon ---------------------------------------------------------------------

    def _token(self, headers: Mapping[str, str], body: bytes) -> _Reply:
        if "application/x-www-form-urlencoded" in headers.get("content-type", ""):
            form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
        else:
            try:
                form = {str(k): str(v) for k, v in json.loads(body or b"{}").items()}
            except (ValueError, AttributeError):
                form = {}
        if form.get("grant_type") != "refresh_token" or not form.get("refresh_token"):
            return _Reply(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "The request is missing a required parameter : grant_type or refresh_token",
                },
            )
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return _Reply(401, {"error": "invalid_client", "error_description": "Client authentication failed"})
        if form["refresh_token"] != self.refresh_token:
            return _Reply(
                400,
                {
                    "error": "invalid_grant",
                    "error_description": "The request has an invalid grant parameter : refresh_token",
                },
            )
        token = "Atza|" + secrets.token_urlsafe(32)
        with self.lock:
            self._tokens[token] = time.time() + self.token_lifetime_s
            self.tokens_issued += 1
        return _Reply(
            200,
            {
                "access_token": token,
                "refresh_token": self.refresh_token,
                "token_type": "bearer",
                "expires_in": math.ceil(self.token_lifetime_s),
            },
        )

    # Control over HTTP (the standalone fake) -----------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> _Reply:
        try:
            data = json.loads(body) if body else {}
            if method == "GET" and path == "state":
                with self.lock:
                    return _Reply(
                        200,
                        {
                            "listings": {
                                sku: [dict(e) for e in item.availability] for sku, item in self.listings.items()
                            },
                            "orders": [self._order_json(o) for o in self.orders.values()],
                            "throttled": self.throttled(),
                            "requests": len(self.log),
                        },
                    )
            if method == "PUT" and path.startswith("listings/"):
                self.add_listing(
                    unquote(path.removeprefix("listings/")),
                    data.get("quantity", 0),
                    product_type=data.get("product_type", "PRODUCT"),
                )
                return _Reply(200, {"ok": True})
            if method == "POST" and path == "orders":
                order_id = self.create_order(
                    [(str(line["sku"]), int(line["quantity"])) for line in data["lines"]],
                    status=data.get("status", "Unshipped"),
                )
                return _Reply(201, {"AmazonOrderId": order_id})
            match = re.fullmatch(r"orders/([^/]+)/(ship|cancel|status|change|delete)", path)
            if method == "POST" and match:
                order_id, action = unquote(match.group(1)), match.group(2)
                if action == "delete":
                    self.delete_order(order_id)
                    return _Reply(200, {"ok": True})
                if action == "change":
                    self.change_order(order_id, str(data["sku"]), int(data["quantity"]))
                elif action == "ship":
                    self.ship_order(order_id, data.get("shipped"))
                elif action == "cancel":
                    self.cancel_order(order_id)
                else:
                    self.set_order_status(order_id, data["status"])
                return _Reply(200, self.order(order_id))
            if method == "POST" and path == "seed":
                seeded = self.seed_listings(
                    int(data["count"]),
                    fba=int(data.get("fba", 0)),
                    inactive=int(data.get("inactive", 0)),
                    prefix=str(data.get("prefix", "SKU")),
                )
                return _Reply(201, {"listings": [vars(s) for s in seeded]})
            if method == "POST" and path == "fail-reports":
                self.fail_reports(str(data.get("outcome", "FATAL")), int(data.get("count", 1)))
                return _Reply(200, {"ok": True})
            if method == "POST" and path == "outage":
                self.set_outage(bool(data.get("on", True)))
                return _Reply(200, {"ok": True})
            if method == "POST" and path == "expire-tokens":
                self.expire_tokens()
                return _Reply(200, {"ok": True})
        except (KeyError, ValueError, TypeError) as err:
            return _Reply(400, {"error": str(err)})
        return _Reply(404, {"error": "unknown control"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes: without this, Nagle's algorithm and the client's delayed
            # ACK hold every answer on a keep-alive connection back by 40 ms.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = fake.handle(self.command, self.path, headers, body)
                raw = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(raw)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return Handler


def _issue(code: str, message: str, path: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"code": code, "message": message, "severity": "ERROR", "categories": ["INVALID_ATTRIBUTE"]}
    if path:
        issue["attributeNames"] = [path.removeprefix("/attributes/")]
    return issue


def _order_number() -> str:
    """Amazon's 3-7-7 order id."""
    first, second, third = secrets.randbelow(900), secrets.randbelow(9_000_000), secrets.randbelow(9_000_000)
    return f"{first + 100}-{second + 1_000_000}-{third + 1_000_000}"


def _csv(query: dict[str, list[str]], name: str) -> list[str]:
    return [v for raw in query.get(name, []) for v in raw.split(",") if v]


def _rate_header(rate: float) -> str:
    return f"{rate:g}"
