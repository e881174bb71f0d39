"""WooCommerce (REST API ``wc/v3``, pinned in ``settings.WOOCOMMERCE_API_VERSION``).

What is sold: a listing's ``external_id`` is the WooCommerce product id (``"123"``) or, for a
variation of a variable product, ``"<parent id>/<variation id>"`` (``"123/456"``): variations are
written through their parent's route, so the parent is part of the id.

- Quantities: ``POST /wp-json/wc/v3/products/batch`` and ``POST .../products/<parent>/variations/batch``
  with ``{"update": [{"id", "manage_stock": true, "stock_quantity"}]}``, at most 100 items a request
  (WooCommerce's ``woocommerce_rest_batch_items_limit``; more gets 413). An item the store refused comes
  back as ``{"id", "error": {"code", "message", "data"}}``: that listing fails, the others are accepted.
  WooCommerce has no compare-and-set, and it lowers stock itself when an order is paid; so before a
  batch the connector reads what the store shows (unless ``blind_overwrite``) and reports a
  listing whose quantity is not what Stockroom last pushed as mismatched instead of overwriting it.
- Read back: ``GET /products?include=…`` and ``GET /products/<parent>/variations?include=…``.
- Orders: webhooks ``order.created`` / ``order.updated`` / ``order.deleted`` signed with
  ``X-WC-Webhook-Signature`` (base64 HMAC-SHA256 of the raw body with the webhook's secret), and a
  backfill poll ``GET /orders?modified_after=…&dates_are_gmt=true&orderby=modified&order=asc``.
  The order truth sweep reads orders back by id: ``GET /orders?include=…&status=any`` (``any`` leaves
  the bin out, and in ``wc/v3`` it cannot be combined with ``trash``: ``WC_REST_Orders_Controller``
  stops at ``any``), then ``status=trash`` for the ids not shown; an id in neither was deleted for good
  and comes back cancelled. Refunds: an order's ``refunds`` carry no quantities, so for an order with
  refunds that is still to be shipped (or was completed after them), ``GET /orders/<id>/refunds`` gives
  the refunded units per line (negative ``quantity``): units that will never ship no longer hold stock.
- Authentication (WooCommerce's own rules): over HTTPS, HTTP Basic with the consumer key and secret
  (or, for servers that drop the Authorization header, ``consumer_key``/``consumer_secret`` in the query
  string: ``query_string_auth``); over plain HTTP, OAuth 1.0a "one-legged" (HMAC-SHA256 of the method,
  URL and query parameters with ``<consumer secret>&``, nonce and timestamp), never the bare secret.
- Limits: self-hosted WooCommerce has no documented rate limit, but hosts and firewalls answer 429 or
  503 with ``Retry-After``: that becomes ``throttled_for``. A channel that sets no budget gets a gentle
  one (``default_rate_per_s``): each push request is a batch of up to 100 writes that PHP handles one by one.
- Discover: one location (WooCommerce core keeps one stock count per product: ``default``, named after
  the store); the catalog from ``GET /products`` and, for each variable product, ``GET
  /products/<id>/variations``, 100 per page (``X-WP-TotalPages``), one request at a time, waiting out
  a 429/503's ``Retry-After``. Webhooks: ``GET /webhooks`` and ``POST /webhooks`` (``PUT
  /webhooks/<id>`` to re-activate or re-key one already pointing at Stockroom), with the channel's
  ``webhook_secret``, so the signatures it sends are the ones ``webhook`` checks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from django.conf import settings
from rest_framework import serializers

from apps.channels.conf import sync_setting
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
    ConnectorRefused,
    ConnectorThrottled,
    MalformedOrder,
    OrderLine,
    OrdersPage,
    PlatformLocation,
    PlatformOrder,
    Progress,
    PushResult,
    QuantityUpdate,
    Webhook,
    WebhookSubscription,
    fields_typed,
    order_body_read,
    order_checked,
    retry_after_seconds,
    transport_failure,
    url_account,
)
from apps.core.outbound import OutboundRefused, failure_text, outbound_session, status_text

BATCH_LIMIT = 100  # WooCommerce's default woocommerce_rest_batch_items_limit
PAGE_SIZE = 100  # the REST API's largest per_page

SIGNATURE_HEADER = "X-WC-Webhook-Signature"
TOPIC_HEADER = "X-WC-Webhook-Topic"
DELIVERY_HEADER = "X-WC-Webhook-Delivery-ID"
WEBHOOK_ID_HEADER = "X-WC-Webhook-ID"
ORDER_TOPICS = {"order.created", "order.updated", "order.deleted", "order.restored"}
# What _order reads from a webhook's order, with the types WooCommerce's REST order schema gives them.
REST_ORDER_FIELDS: dict[str, tuple[type, ...]] = {
    "id": ID,
    "status": TEXT_OR_NULL,
    "number": (str, int, type(None)),
    "date_modified_gmt": TEXT_OR_NULL,
}
REST_LINE_FIELDS: dict[str, tuple[type, ...]] = {
    "sku": TEXT_OR_NULL,
    "quantity": NUMBER,
    "product_id": NUMBER,
    "variation_id": NUMBER,
}

Status = PlatformOrder.Status
# WooCommerce's core order statuses. Statuses added by plugins ("shipped", "ready-to-pack", ...)
# are OPEN unless the channel's ``order_statuses`` setting says otherwise: stock stays held.
ORDER_STATUSES: dict[str, str] = {
    "pending": Status.PENDING,  # created, not paid
    "processing": Status.OPEN,  # paid, to be shipped
    "on-hold": Status.OPEN,  # awaiting payment confirmation; WooCommerce has already lowered stock
    "completed": Status.FULFILLED,
    "cancelled": Status.CANCELLED,
    "refunded": Status.CANCELLED,
    "failed": Status.CANCELLED,
    "trash": Status.CANCELLED,  # an order moved to the bin
}
# A block checkout's draft is a cart being filled in, not an order: never imported.
IGNORED_STATUSES = {"checkout-draft", "auto-draft", "draft"}
OPEN_STATUSES = ("pending", "processing", "on-hold")
# The statuses whose refunds are read: an order still to be shipped (refunded units will not leave), and a
# completed one (units refunded before it was completed never left; those refunded after are returns).
REFUNDS_READ = (Status.PENDING, Status.OPEN, Status.FULFILLED)

EXTERNAL_ID = re.compile(r"^\s*(\d+)\s*(?:/\s*(\d+)\s*)?$")
PING_BODY = re.compile(rb"^webhook_id=\d+$")

LOCATION_ID = "default"  # WooCommerce core keeps one stock count per product
PRODUCT_FIELDS = "id,name,type,sku,manage_stock,stock_quantity,variations"
VARIATION_FIELDS = "id,name,sku,manage_stock,stock_quantity,attributes"
READ_ATTEMPTS = 8  # a discovery read waits out this many 429/503s in a row before giving up
READ_WAIT_MAX_S = 120.0  # and never waits longer than this for one


# --- settings and credentials ---------------------------------------------------------------


STATUS_MEANINGS = (Status.PENDING, Status.OPEN, Status.FULFILLED, Status.CANCELLED)


def parse_status_map(text: str) -> dict[str, str]:
    """``"shipped=fulfilled, wc-ready=open"`` -> ``{"shipped": "fulfilled", "ready": "open"}``; else ValueError."""
    mapping: dict[str, str] = {}
    for pair in re.split(r"[,;\n]+", text or ""):
        if not pair.strip():
            continue
        status, equals, meaning = pair.partition("=")
        status, meaning = status.strip().lower().removeprefix("wc-"), meaning.strip().lower()
        if not equals or not re.fullmatch(r"[a-z0-9_-]+", status) or meaning not in STATUS_MEANINGS:
            raise ValueError(f"{pair.strip()!r}: write status=meaning, the meaning one of {', '.join(STATUS_MEANINGS)}")
        mapping[status] = meaning
    return mapping


def default_api_version() -> str:
    return str(settings.WOOCOMMERCE_API_VERSION)


class WooCommerceSettings(serializers.Serializer):
    store_url = serializers.URLField(
        help_text="The store's address as WordPress knows it (Settings > General > Site Address), "
        "e.g. https://shop.example.com; https is required for a store on the internet."
    )
    api_version = serializers.RegexField(
        r"^wc/v\d+$", default=default_api_version, help_text="REST API namespace; Stockroom speaks wc/v3."
    )
    query_string_auth = serializers.BooleanField(
        default=False,
        help_text="Send the key in the query string instead of the Authorization header (HTTPS only), "
        'for servers that answer "Consumer key is missing".',
    )
    blind_overwrite = serializers.BooleanField(
        default=False,
        help_text="Push without first reading what the store shows: one request fewer, but a sale on the store "
        "that Stockroom has not imported yet can be overwritten (WooCommerce has no compare-and-set).",
    )
    order_statuses = serializers.CharField(
        default="",
        allow_blank=True,
        help_text="Order statuses added by plugins, as status=meaning pairs, e.g. "
        '"shipped=fulfilled, ready-to-pack=open" (meanings: pending, open, fulfilled, cancelled); '
        "other unknown statuses count as open.",
    )

    def validate_store_url(self, value: str) -> str:
        parts = urlsplit(value)
        if parts.query or parts.fragment:
            raise serializers.ValidationError("The store address has no query string or fragment.")
        return value.rstrip("/")

    def validate_order_statuses(self, value: str) -> str:
        try:
            mapping = parse_status_map(value)
        except ValueError as err:
            raise serializers.ValidationError(str(err)) from err
        return ", ".join(f"{status}={meaning}" for status, meaning in mapping.items())

    def validate_api_version(self, value: str) -> str:
        if value != default_api_version():
            raise serializers.ValidationError(f"Stockroom speaks {default_api_version()} only.")
        return value


class WooCommerceCredentials(serializers.Serializer):
    consumer_key = serializers.RegexField(
        r"^ck_[0-9A-Za-z]+$",
        help_text="WooCommerce > Settings > Advanced > REST API > Add key (Read/Write): Consumer key (ck_...).",
    )
    consumer_secret = serializers.RegexField(r"^cs_[0-9A-Za-z]+$", help_text="The same key's Consumer secret (cs_...).")
    webhook_secret = serializers.CharField(
        help_text="The Secret you give the order webhooks (WooCommerce > Settings > Advanced > Webhooks)."
    )


# --- small helpers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What an external id points at: a product, or a variation under its parent."""

    product_id: int
    parent_id: int | None = None  # set for a variation

    @property
    def path(self) -> str:
        return "products" if self.parent_id is None else f"products/{self.parent_id}/variations"


def parse_external_id(value: str) -> Target | None:
    """``"123"`` -> product 123; ``"123/456"`` -> variation 456 of product 123; anything else -> None."""
    match = EXTERNAL_ID.match(value or "")
    if match is None:
        return None
    first, second = int(match.group(1)), match.group(2)
    if second is None:
        return Target(first) if first > 0 else None
    variation = int(second)
    return Target(variation, parent_id=first) if first > 0 and variation > 0 else None


def external_id_for(product_id: int, variation_id: int | None = None) -> str:
    """The listing external id of a product or a variation (the inverse of ``parse_external_id``)."""
    return f"{product_id}/{variation_id}" if variation_id else str(product_id)


def sign_webhook(body: bytes, secret: str) -> str:
    """WooCommerce's ``X-WC-Webhook-Signature``: base64 of the HMAC-SHA256 of the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def rfc3986(value: str) -> str:
    """Percent-encoding as PHP's rawurlencode (everything but A-Z a-z 0-9 - _ . ~)."""
    return quote(value, safe="")


def oauth_signature(method: str, url: str, params: Iterable[tuple[str, str]], secret: str, algorithm: str) -> str:
    """The OAuth 1.0a signature WooCommerce checks: base string ``METHOD&url&params`` signed with ``secret&``."""
    encoded = sorted((rfc3986(k), rfc3986(v)) for k, v in params)
    base = "&".join([method.upper(), rfc3986(url), rfc3986("&".join(f"{k}={v}" for k, v in encoded))])
    digest = hashlib.sha256 if algorithm == "HMAC-SHA256" else hashlib.sha1
    return base64.b64encode(hmac.new(f"{secret}&".encode(), base.encode(), digest).digest()).decode()


def gmt(value: datetime) -> str:
    """A moment as WooCommerce's GMT dates are written: ``2026-01-31T12:00:00`` (UTC, whole seconds)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_gmt(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_local = threading.local()


def _session() -> requests.Session:
    """One keep-alive session per thread (the sync worker pushes from a thread pool)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = outbound_session()
        session.headers["User-Agent"] = "Stockroom inventory sync"
    return session


@dataclass
class _Tally:
    requests: int = 0


@dataclass(frozen=True)
class _Poll:
    """Where a poll of orders stands: ``"<open|all>|<modified_after or ->|<page>|<started>"`` as a cursor."""

    open_only: bool  # the first poll: orders that hold stock, whatever their age
    after: datetime | None  # modified after (the window's start)
    page: int
    started: datetime | None  # the store's clock when the poll began

    def cursor(self) -> str:
        assert self.started is not None
        after = gmt(self.after) if self.after else "-"
        return "|".join(["open" if self.open_only else "all", after, str(self.page), gmt(self.started)])

    @classmethod
    def parse(cls, cursor: str) -> _Poll:
        try:
            mode, after_text, page_text, started_text = cursor.split("|")
            after, started, page = parse_gmt(after_text), parse_gmt(started_text), int(page_text)
            if mode not in ("open", "all") or (after is None and after_text != "-") or started is None or page < 1:
                raise ValueError(cursor)
        except ValueError as err:
            raise ConnectorError(f"not a WooCommerce orders cursor: {cursor!r}") from err
        return cls(mode == "open", after, page, started)


class Throttled(Exception):
    """The store (or its host) answered 429, or 503 with Retry-After: nothing was done."""

    def __init__(self, wait_s: float, retry_after: str | None) -> None:
        super().__init__(f"the store asked to wait {wait_s:.1f} s")
        self.wait_s, self.retry_after = wait_s, retry_after


class HttpFailure(Exception):
    """A request failed as a whole (5xx, an unexpected 4xx, the network): the items it carried fail."""

    def __init__(self, message: str, *, retry_after: str | None = None, connection: bool = False) -> None:
        super().__init__(message)
        self.retry_after, self.connection = retry_after, connection


_ERROR_CODE = re.compile(r"^[a-z0-9_]{1,80}$")


def _error_text(response: requests.Response) -> str:
    """The status, with WooCommerce's error code when the answer is one (``{"code", "message", "data"}``).

    Never the body or its message: the store's answer is not shown to people (it may echo the request)."""
    text = status_text(response.status_code)
    try:
        payload = response.json()
    except ValueError:
        return text
    code = payload.get("code") if isinstance(payload, dict) else None
    return f"{text} ({code})" if isinstance(code, str) and _ERROR_CODE.match(code) else text


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _entry(row: Mapping[str, Any], external_id: str, title: str) -> CatalogEntry:
    """A product or variation row as a catalog entry. ``manage_stock: "parent"``: the variation shows (and
    sells from) its parent's count."""
    tracked = row.get("manage_stock") in (True, "parent")
    quantity = row.get("stock_quantity")
    counted = tracked and isinstance(quantity, int) and not isinstance(quantity, bool)
    return CatalogEntry(
        sku=str(row.get("sku") or "").strip(),
        external_id=external_id,
        title=title,
        tracked=tracked,
        quantities={LOCATION_ID: quantity} if counted and isinstance(quantity, int) else {},
    )


def _variation_title(row: Mapping[str, Any], parent_name: str) -> str:
    options = [str(a.get("option")) for a in row.get("attributes") or [] if isinstance(a, dict) and a.get("option")]
    if options:
        return f"{parent_name} - {', '.join(options)}"
    return str(row.get("name") or parent_name)


# --- the connector ----------------------------------------------------------------------------


class WooCommerceConnector(Connector):
    name = "woocommerce"
    credential_destinations = ("store_url",)
    label = "WooCommerce"
    settings_serializer = WooCommerceSettings
    credentials_serializer = WooCommerceCredentials
    receives_orders = True
    polls_orders = True  # the backfill poll catches an order whose webhook was lost
    max_batch = BATCH_LIMIT
    orders_get_batch = PAGE_SIZE  # ``include`` with ``per_page=100``: one page per batch
    # No platform limit to follow; a shared or managed WordPress host is the bottleneck: two batch
    # requests a second (each up to 100 items), a few at once.
    default_rate_per_s = 2.0
    default_burst = 4
    webhook_topics = ("order.created", "order.updated", "order.deleted")

    def account(self, settings: Mapping[str, Any]) -> str:
        return url_account(settings.get("store_url"))

    # --- quantities ---

    def push(self, channel: ChannelRef, updates: Sequence[QuantityUpdate]) -> PushResult:
        result = PushResult()
        targets: dict[int, Target] = {}
        taken: dict[Target, int] = {}
        for update in updates:
            target = parse_external_id(update.external_id)
            if target is None:
                result.failed[update.listing_id] = (
                    f"no WooCommerce product id ({update.external_id!r}): set the listing's external id to the "
                    "product id, or <parent id>/<variation id> for a variation"
                )
            elif target in taken:
                # One product has one stock count: two listings on it would overwrite each other.
                result.failed[update.listing_id] = (
                    f"listing {taken[target]} of this channel is linked to the same WooCommerce product "
                    f"({update.external_id}); link each product to one listing"
                )
            else:
                targets[update.listing_id] = target
                taken[target] = update.listing_id
        to_push = [u for u in updates if u.listing_id in targets]
        tally = _Tally()
        try:
            if to_push and self._check_before_push(channel):
                to_push = self._compare(channel, to_push, targets, result, tally)
            groups: dict[int | None, list[QuantityUpdate]] = {}
            for update in to_push:
                groups.setdefault(targets[update.listing_id].parent_id, []).append(update)
            broken: HttpFailure | None = None
            for parent_id, group in groups.items():
                for batch in chunks(group, BATCH_LIMIT):
                    if broken is not None:  # the store is unreachable: do not wait out a timeout per batch
                        result.failed.update(dict.fromkeys((u.listing_id for u in batch), str(broken)))
                        continue
                    try:
                        self._push_batch(channel, parent_id, batch, targets, result, tally)
                    except HttpFailure as failure:
                        result.failed.update(dict.fromkeys((u.listing_id for u in batch), str(failure)))
                        result.retry_after = failure.retry_after or result.retry_after
                        broken = failure if failure.connection else None
        except Throttled as throttled:
            # Pushes are absolute quantities, so batches the store took before it throttled are simply
            # sent again with the rest: nothing is lost or counted twice.
            return PushResult(
                throttled_for=throttled.wait_s, requests=tally.requests, retry_after=throttled.retry_after
            )
        result.requests = tally.requests
        return result

    def _compare(
        self,
        channel: ChannelRef,
        updates: list[QuantityUpdate],
        targets: Mapping[int, Target],
        result: PushResult,
        tally: _Tally,
    ) -> list[QuantityUpdate]:
        """WooCommerce has no compare-and-set: read first, and hold back what changed on the store."""
        compared = [u for u in updates if u.last_pushed is not None]
        if not compared:
            return updates
        try:
            shown = self._quantities(channel, [(u.listing_id, targets[u.listing_id]) for u in compared], tally)
        except HttpFailure as failure:
            error = f"could not read the store's quantities before pushing: {failure}"
            result.failed.update(dict.fromkeys((u.listing_id for u in updates), error))
            result.retry_after = failure.retry_after
            return []
        for update in compared:
            now = shown.get(update.listing_id)
            if now is not None and now != max(0, update.last_pushed or 0):
                result.mismatched[update.listing_id] = now
        return [u for u in updates if u.listing_id not in result.mismatched]

    def _push_batch(
        self,
        channel: ChannelRef,
        parent_id: int | None,
        batch: Sequence[QuantityUpdate],
        targets: Mapping[int, Target],
        result: PushResult,
        tally: _Tally,
    ) -> None:
        path = "products/batch" if parent_id is None else f"products/{parent_id}/variations/batch"
        sent = {targets[u.listing_id].product_id: max(0, u.available) for u in batch}
        body = {
            "update": [
                {"id": product_id, "manage_stock": True, "stock_quantity": qty} for product_id, qty in sent.items()
            ]
        }
        tally.requests += 1
        payload = self._call(channel, "POST", path, json_body=body)
        answers: dict[int, dict[str, Any]] = {}
        for item in (payload or {}).get("update", []) if isinstance(payload, dict) else []:
            try:
                answers[int(item["id"])] = item
            except (KeyError, TypeError, ValueError):
                continue
        for update in batch:
            product_id = targets[update.listing_id].product_id
            answer = answers.get(product_id)
            if answer is None:
                result.failed[update.listing_id] = "the store's answer does not mention this product"
            elif isinstance(answer.get("error"), dict):
                error = answer["error"]
                result.failed[update.listing_id] = f"{error.get('code', 'error')}: {error.get('message', '')}".strip()
            elif answer.get("manage_stock") is False or (
                "stock_quantity" in answer and answer["stock_quantity"] != sent[product_id]
            ):
                result.failed[update.listing_id] = (
                    f"the store kept manage_stock={answer.get('manage_stock')!r}, "
                    f"stock_quantity={answer.get('stock_quantity')!r} (sent {sent[product_id]})"
                )
            else:
                result.accepted.append(update.listing_id)

    def read_back(self, channel: ChannelRef, listings: Sequence[QuantityUpdate]) -> dict[int, int | None]:
        targets = [(u.listing_id, parse_external_id(u.external_id)) for u in listings]
        known = [(listing_id, target) for listing_id, target in targets if target is not None]
        try:
            shown = self._quantities(channel, known, _Tally())
        except Throttled as throttled:
            raise ConnectorThrottled(f"WooCommerce is throttling reads: {throttled}", wait_s=throttled.wait_s) from None
        except HttpFailure as failure:
            raise ConnectorError(str(failure), retry_after=failure.retry_after) from failure
        return {listing_id: shown.get(listing_id) for listing_id, _ in targets}

    def _quantities(
        self, channel: ChannelRef, listings: Sequence[tuple[int, Target]], tally: _Tally
    ) -> dict[int, int | None]:
        """What the store shows for these listings (None: no such product, or it does not count stock)."""
        by_parent: dict[int | None, dict[int, list[int]]] = {}
        for listing_id, target in listings:
            by_parent.setdefault(target.parent_id, {}).setdefault(target.product_id, []).append(listing_id)
        shown: dict[int, int | None] = {}
        for parent_id, products in by_parent.items():
            path = "products" if parent_id is None else f"products/{parent_id}/variations"
            for ids in chunks(sorted(products), PAGE_SIZE):
                tally.requests += 1
                params = {
                    "include": ",".join(str(i) for i in ids),
                    "per_page": str(PAGE_SIZE),
                    "_fields": "id,manage_stock,stock_quantity",
                }
                rows = self._call(channel, "GET", path, params=params)
                if not isinstance(rows, list):
                    raise HttpFailure(f"unreadable answer from {path}: expected a list")
                for row in rows:
                    try:
                        product_id = int(row["id"])
                    except (KeyError, TypeError, ValueError):
                        continue
                    quantity = row.get("stock_quantity")
                    # A variation may count stock on its parent ("parent"); it then shows the parent's number.
                    counted = row.get("manage_stock") in (True, "parent") and isinstance(quantity, int)
                    for listing_id in products.get(product_id, []):
                        shown[listing_id] = int(quantity) if counted else None
        return shown

    # --- orders ---

    def orders_since(self, channel: ChannelRef, since: datetime | None, cursor: str | None = None) -> OrdersPage:
        poll = _Poll.parse(cursor) if cursor else _Poll(open_only=since is None, after=since, page=1, started=None)
        params = {
            "per_page": str(PAGE_SIZE),
            "page": str(poll.page),
            "orderby": "modified",
            "order": "asc",
            "dates_are_gmt": "true",
        }
        if poll.open_only:
            # The first poll of a channel: every order that holds stock now, whatever its age.
            params["status"] = ",".join(OPEN_STATUSES)
        if poll.after is not None:
            params["modified_after"] = gmt(poll.after)
        try:
            rows, response = self._call_with_response(channel, "GET", "orders", params=params)
        except Throttled as throttled:
            raise ConnectorThrottled(
                f"WooCommerce is throttling order reads: {throttled}", wait_s=throttled.wait_s
            ) from None
        except HttpFailure as failure:
            raise ConnectorError(str(failure), retry_after=failure.retry_after) from failure
        if not isinstance(rows, list):
            raise ConnectorError("unreadable answer from orders: expected a list")
        # The store's own clock (Date header) at the poll's first page, a second early: an order saved
        # while that page was read may not be in it, so the next poll starts before it.
        started = poll.started or self._server_time(response) - timedelta(seconds=1)
        statuses = self._status_map(channel)
        try:
            orders = [order for row in rows if (order := self._read_order(channel, row, statuses)) is not None]
        except Throttled as throttled:
            raise ConnectorThrottled(
                f"WooCommerce is throttling order reads: {throttled}", wait_s=throttled.wait_s
            ) from None
        except HttpFailure as failure:
            raise ConnectorError(str(failure), retry_after=failure.retry_after) from failure
        try:
            last_page = poll.page >= int(response.headers["X-WP-TotalPages"])
        except (KeyError, ValueError):
            last_page = len(rows) < PAGE_SIZE
        if last_page:
            complete = started if since is None or poll.open_only else max(started, since)
            return OrdersPage(orders=orders, complete_until=complete, next_cursor=None)
        # More to come. Move the window rather than the page when we can: an order changed while we page
        # jumps to the end of the list (or leaves it), and with plain page numbers others would shift under us.
        last = max((d for row in rows if (d := parse_gmt(row.get("date_modified_gmt"))) is not None), default=None)
        if last is not None and (poll.after is None or last - timedelta(seconds=1) > poll.after):
            following = _Poll(poll.open_only, last - timedelta(seconds=1), 1, started)
        else:  # a full page within one second: the next page of the same window
            following = _Poll(poll.open_only, poll.after, poll.page + 1, started)
        # Every order changed up to the window's start has been seen (the first poll promises nothing yet).
        complete_until = None if poll.open_only else following.after
        return OrdersPage(orders=orders, complete_until=complete_until, next_cursor=following.cursor())

    @staticmethod
    def _server_time(response: requests.Response) -> datetime:
        try:
            when = parsedate_to_datetime(response.headers.get("Date", ""))
            return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        except (TypeError, ValueError):
            return datetime.now(UTC) - timedelta(seconds=5)

    @staticmethod
    def _status_map(channel: ChannelRef) -> dict[str, str]:
        try:
            extra = parse_status_map(str(channel.settings.get("order_statuses") or ""))
        except ValueError:
            extra = {}  # validated when saved; an unreadable one leaves the core statuses
        return {**ORDER_STATUSES, **extra}

    def orders_get(self, channel: ChannelRef, external_ids: Sequence[str]) -> list[PlatformOrder]:
        """The orders as the store shows them now: ``status=any`` first, then the bin (``trash``) for the ids
        not shown; an id in neither was deleted for good and comes back cancelled with no lines. An id
        that is no WooCommerce order id, a draft, or an order the connector cannot read is left out."""
        wanted = [i for i in dict.fromkeys(str(e) for e in external_ids) if i.isdigit() and str(int(i)) == i]
        statuses = self._status_map(channel)
        found: dict[str, PlatformOrder | None] = {}
        tally = _Tally()
        try:
            for status in ("any", "trash"):
                missing = [i for i in wanted if i not in found]
                for ids in chunks(missing, PAGE_SIZE):
                    tally.requests += 1
                    params = {"include": ",".join(ids), "per_page": str(PAGE_SIZE), "status": status}
                    rows = self._call(channel, "GET", "orders", params=params)
                    if not isinstance(rows, list):
                        raise HttpFailure("unreadable answer from orders: expected a list")
                    for row in rows:
                        order_id = str(row.get("id")) if isinstance(row, dict) else ""
                        if order_id in ids and order_id not in found:
                            found[order_id] = self._read_order(channel, row, statuses, tally, strict=False)
        except Throttled as throttled:
            raise ConnectorThrottled(
                f"WooCommerce is throttling order reads: {throttled}", wait_s=throttled.wait_s
            ) from None
        except HttpFailure as failure:
            raise ConnectorError(str(failure), retry_after=failure.retry_after) from failure
        orders = []
        for order_id in wanted:
            if order_id not in found:  # neither listed nor in the bin: deleted permanently
                orders.append(PlatformOrder(external_id=order_id, status=Status.CANCELLED, lines=()))
            elif (order := found[order_id]) is not None:
                orders.append(order)
        return orders

    def _read_order(
        self,
        channel: ChannelRef,
        row: Any,
        statuses: Mapping[str, str],
        tally: _Tally | None = None,
        *,
        strict: bool = True,
    ) -> PlatformOrder | None:
        """An order of a poll or a read back, its refunded units taken off when it is still to be shipped.

        Raises Throttled/HttpFailure when the refunds cannot be read; ``strict=False``: an order that is
        not WooCommerce's shape is None (left out) instead of a ConnectorError."""
        refunded = self._refunded_units(channel, row, statuses, tally or _Tally())
        if strict:
            return self._order(row, statuses, refunded)
        try:
            order = self._order(row, statuses, refunded)
            return None if order is None else order_checked(order, "an order of the store")
        except (ConnectorError, *ORDER_SHAPE_ERRORS):
            return None

    def _refunded_units(
        self, channel: ChannelRef, row: Any, statuses: Mapping[str, str], tally: _Tally
    ) -> dict[tuple[int, int], int]:
        """(product id, variation id) -> units refunded that will never ship, for an order with refunds.

        WooCommerce's order shows its refunds as ``{id, reason, total}`` only; the refunded units are the
        negative ``quantity`` of each refund's ``line_items`` (``WC_REST_Order_Refunds_Controller``). Of a
        completed order, only refunds made before it was completed count (later ones are returns of
        shipped goods); of a cancelled one, none are read (the cancel releases everything)."""
        if not isinstance(row, dict) or not isinstance(row.get("refunds"), list) or not row["refunds"]:
            return {}
        raw_status = str(row.get("status") or "").removeprefix("wc-")
        order_id = _int(row.get("id"))
        status = statuses.get(raw_status, Status.OPEN)
        if status not in REFUNDS_READ or order_id is None:
            return {}
        completed = parse_gmt(row.get("date_completed_gmt")) if status == Status.FULFILLED else None
        if status == Status.FULFILLED and completed is None:
            return {}  # completed when, is not said: its refunds are taken as returns
        tally.requests += 1
        params = {"per_page": str(PAGE_SIZE), "_fields": "id,date_created_gmt,line_items"}
        refunds = self._call(channel, "GET", f"orders/{order_id}/refunds", params=params)
        if not isinstance(refunds, list):
            raise HttpFailure(f"unreadable answer from orders/{order_id}/refunds: expected a list")
        units: dict[tuple[int, int], int] = {}
        for refund in refunds:
            if completed is not None:
                made = parse_gmt(refund.get("date_created_gmt")) if isinstance(refund, dict) else None
                if made is None or made >= completed:
                    continue
            for item in (refund.get("line_items") or []) if isinstance(refund, dict) else []:
                if not isinstance(item, dict):
                    continue
                quantity, product_id = _int(item.get("quantity")), _int(item.get("product_id"))
                if quantity and product_id:
                    key = (product_id, _int(item.get("variation_id")) or 0)
                    units[key] = units.get(key, 0) + abs(quantity)
        return units

    @staticmethod
    def _order(
        row: Any, statuses: Mapping[str, str], refunded: Mapping[tuple[int, int], int] | None = None
    ) -> PlatformOrder | None:
        """One order of the REST API (or a webhook body) as Stockroom sees it; None for drafts.

        ``refunded``: units refunded per (product id, variation id), taken off the order's lines."""
        if not isinstance(row, dict) or "id" not in row:
            raise ConnectorError("an order without an id")
        raw_status = str(row.get("status") or "").removeprefix("wc-")
        if raw_status in IGNORED_STATUSES:
            return None
        status = statuses.get(raw_status, Status.OPEN)
        left = dict(refunded or {})
        lines = []
        for item in row.get("line_items") or []:
            try:
                quantity = int(item.get("quantity") or 0)
                product_id = int(item.get("product_id") or 0)
                variation_id = int(item.get("variation_id") or 0)
            except (TypeError, ValueError, AttributeError) as err:
                raise ConnectorError(f"order {row['id']}: unreadable line item {item!r}") from err
            taken = min(max(quantity, 0), left.get((product_id, variation_id), 0))
            if taken:
                quantity -= taken
                left[(product_id, variation_id)] -= taken
            if quantity <= 0:
                continue
            lines.append(
                OrderLine(
                    sku=str(item.get("sku") or ""),
                    quantity=quantity,
                    # Core WooCommerce ships whole orders: a completed order has shipped every line.
                    fulfilled=quantity if status == Status.FULFILLED else 0,
                    external_id=external_id_for(product_id, variation_id) if product_id else "",
                )
            )
        return PlatformOrder(
            external_id=str(row["id"]),
            status=status,
            lines=tuple(lines),
            updated_at=parse_gmt(row.get("date_modified_gmt")),
            number=str(row.get("number") or row["id"]),
        )

    def webhook_verify(self, channel: ChannelRef, headers: Mapping[str, str], body: bytes) -> Webhook | None:
        lower = {k.lower(): v for k, v in headers.items()}
        signature = lower.get(SIGNATURE_HEADER.lower(), "")
        if not signature:
            # WooCommerce pings a new webhook's delivery URL with an unsigned "webhook_id=<id>" and
            # keeps the webhook only if the answer is 200. It carries nothing, so it is answered.
            if PING_BODY.match(body.strip()):
                return Webhook(delivery_id="", topic="ping", orders=[])  # nothing to remember either
            return None
        secret = str(channel.credentials.get("webhook_secret") or "")
        if not secret or not hmac.compare_digest(sign_webhook(body, secret), signature.strip()):
            return None
        topic = lower.get(TOPIC_HEADER.lower(), "")
        # WooCommerce's delivery id is a hash of the webhook id and the current second, so two deliveries
        # of one webhook in the same second share it: the body's hash keeps them apart.
        delivery = lower.get(DELIVERY_HEADER.lower(), "") or lower.get(WEBHOOK_ID_HEADER.lower(), "")
        delivery_id = f"{delivery}:{hashlib.sha256(body).hexdigest()[:16]}"
        if topic not in ORDER_TOPICS:
            return Webhook(delivery_id=delivery_id, topic=topic, orders=[])
        what = f"a signed {topic} webhook"
        payload = order_body_read(body, what)
        fields_typed(payload, REST_ORDER_FIELDS, REST_LINE_FIELDS, what)
        if payload.get("id") in (None, ""):
            raise MalformedOrder(f"{what} without an order id")
        try:
            if topic == "order.deleted":
                # Only the id is sent: a deleted (or binned) order no longer holds stock.
                orders = [PlatformOrder(external_id=str(payload["id"]), status=Status.CANCELLED, lines=())]
            else:
                statuses = self._status_map(channel)
                try:
                    refunded = self._refunded_units(channel, payload, statuses, _Tally())
                except (Throttled, HttpFailure, ConnectorError):
                    # The refunded units cannot be read now: the poll and the sweep read the order again.
                    return Webhook(delivery_id=delivery_id, topic=topic, orders=[])
                order = self._order(payload, statuses, refunded)
                orders = [] if order is None else [order]
        except ORDER_SHAPE_ERRORS as err:
            raise MalformedOrder(f"{what} that is not an order ({type(err).__name__})") from err
        return Webhook(delivery_id=delivery_id, topic=topic, orders=[order_checked(o, what) for o in orders])

    # --- going live: discover and subscribe ---

    def locations(self, channel: ChannelRef) -> list[PlatformLocation]:
        base = self._store_url(channel)
        try:
            index = _session().get(f"{base}/wp-json/", timeout=self._timeout())
            described = index.json() if index.status_code == 200 else None
        except (requests.RequestException, ValueError):
            described = None
        name = described.get("name") if isinstance(described, dict) else None
        return [PlatformLocation(id=LOCATION_ID, name=str(name or base))]

    def catalog(self, channel: ChannelRef, progress: Progress | None = None) -> Catalog:
        tally = _Tally()
        entries: list[CatalogEntry] = []
        variable: list[tuple[int, str]] = []
        total: int | None = None
        # Oldest first by id: a product added while we page lands on the last page instead of shifting the others.
        params = {"per_page": str(PAGE_SIZE), "orderby": "id", "order": "asc", "_fields": PRODUCT_FIELDS}
        for rows, pages_total in self._pages(channel, "products", params, tally):
            if total is None and pages_total is not None:
                total = pages_total
            for row in rows:
                product_id = _int(row.get("id"))
                kind = str(row.get("type") or "simple")
                if product_id is None or kind == "grouped":  # a grouped product sells its children, not itself
                    continue
                if kind == "variable":
                    if row.get("variations") != []:
                        variable.append((product_id, str(row.get("name") or "")))
                    continue
                entries.append(_entry(row, external_id_for(product_id), str(row.get("name") or "")))
            if progress is not None:
                progress(len(entries), None)
        variation_params = {"per_page": str(PAGE_SIZE), "orderby": "id", "order": "asc", "_fields": VARIATION_FIELDS}
        for parent_id, parent_name in variable:
            for rows, _ in self._pages(channel, f"products/{parent_id}/variations", variation_params, tally):
                for row in rows:
                    variation_id = _int(row.get("id"))
                    if variation_id is not None:
                        title = _variation_title(row, parent_name)
                        entries.append(_entry(row, external_id_for(parent_id, variation_id), title))
            if progress is not None:
                progress(len(entries), None)
        return Catalog(entries=entries, requests=tally.requests)

    def _pages(
        self, channel: ChannelRef, path: str, params: Mapping[str, str], tally: _Tally
    ) -> Iterator[tuple[list[dict[str, Any]], int | None]]:
        """Every page of a collection: (rows, X-WP-Total or None), following ``X-WP-TotalPages``."""
        page = 1
        while True:
            rows, response = self._read(channel, "GET", path, {**params, "page": str(page)}, tally)
            if not isinstance(rows, list):
                raise ConnectorError(f"unreadable answer from {path}: expected a list")
            total = _int(response.headers.get("X-WP-Total"))
            yield [row for row in rows if isinstance(row, dict)], total
            pages = _int(response.headers.get("X-WP-TotalPages"))
            if (pages is not None and page >= pages) or (pages is None and len(rows) < PAGE_SIZE) or not rows:
                return
            page += 1

    def _read(
        self,
        channel: ChannelRef,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        tally: _Tally,
        json_body: Any = None,
    ) -> tuple[Any, requests.Response]:
        """One request of a discovery or subscription: waits out the host's 429/503 (its Retry-After), then
        raises ConnectorThrottled; any other failure is a ConnectorError."""
        wait = 0.0
        for _ in range(READ_ATTEMPTS):
            tally.requests += 1
            try:
                return self._call_with_response(channel, method, path, params=params, json_body=json_body)
            except Throttled as throttled:
                if throttled.wait_s > READ_WAIT_MAX_S:
                    raise ConnectorThrottled(
                        f"WooCommerce is throttling: {throttled}", wait_s=throttled.wait_s
                    ) from None
                time.sleep(throttled.wait_s)
                wait = throttled.wait_s
            except HttpFailure as failure:
                raise ConnectorError(str(failure), retry_after=failure.retry_after) from failure
        raise ConnectorThrottled(f"WooCommerce kept throttling {path}", wait_s=wait)

    def webhook_subscriptions(self, channel: ChannelRef) -> list[WebhookSubscription]:
        return [sub for sub, _ in self._subscriptions(channel, _Tally())]

    def _subscriptions(self, channel: ChannelRef, tally: _Tally) -> list[tuple[WebhookSubscription, str]]:
        """The store's order webhooks of ``webhook_topics``, with their status (active, paused, disabled)."""
        found = []
        params = {"per_page": str(PAGE_SIZE), "status": "all", "order": "asc"}
        for rows, _ in self._pages(channel, "webhooks", params, tally):
            for row in rows:
                topic, hook_id = str(row.get("topic") or ""), _int(row.get("id"))
                if topic in self.webhook_topics and hook_id is not None:
                    status = str(row.get("status") or "")
                    address = str(row.get("delivery_url") or "")
                    found.append((WebhookSubscription(str(hook_id), topic, address, status == "active"), status))
        return found

    def webhooks_subscribe(self, channel: ChannelRef, address: str) -> list[WebhookSubscription]:
        secret = str(channel.credentials.get("webhook_secret") or "")
        if not secret:
            raise ConnectorError("No webhook secret: set the channel's webhook_secret before subscribing the webhooks.")
        tally = _Tally()
        existing = self._subscriptions(channel, tally)
        result: list[WebhookSubscription] = []
        for topic in self.webhook_topics:
            mine = [(sub, status) for sub, status in existing if sub.topic == topic and sub.address == address]
            # Reuse one already pointing here (an active one first), never add a second: WooCommerce would
            # deliver every order twice. Its secret is set again: WooCommerce never shows it, and a webhook
            # made by hand with another secret would have every delivery refused.
            mine.sort(key=lambda pair: pair[1] != "active")
            if mine:
                sub, _ = mine[0]
                body = {"secret": secret, "status": "active"}
                row, _ = self._read(channel, "PUT", f"webhooks/{sub.id}", None, tally, json_body=body)
            else:
                body = {
                    "name": f"Stockroom {topic}",
                    "topic": topic,
                    "delivery_url": address,
                    "secret": secret,
                    "status": "active",
                }
                row, _ = self._read(channel, "POST", "webhooks", None, tally, json_body=body)
            if not isinstance(row, dict) or _int(row.get("id")) is None:
                raise ConnectorError(f"unreadable answer when subscribing {topic}: {str(row)[:200]}")
            result.append(
                WebhookSubscription(
                    str(row["id"]),
                    str(row.get("topic") or topic),
                    str(row.get("delivery_url") or address),
                    row.get("status") == "active",
                )
            )
        return result

    # --- connection ---

    def test_connection(self, channel: ChannelRef) -> str:
        base = self._store_url(channel)
        try:
            index = _session().get(f"{base}/wp-json/", timeout=self._timeout())
        except requests.RequestException as err:
            raise transport_failure(err, f"{base} cannot be reached") from err
        version = self._api_version(channel)
        try:
            described = index.json()
        except ValueError:
            described = None
        if index.status_code != 200 or not isinstance(described, dict):
            raise ConnectorError(
                f"{base}/wp-json/ is not a WordPress REST API (HTTP {index.status_code}); check the store address "
                "and that permalinks are not set to Plain"
            )
        if version not in (described.get("namespaces") or []):
            raise ConnectorError(f"{base} does not offer the WooCommerce REST API {version}: is WooCommerce active?")
        try:
            _, response = self._call_with_response(
                channel, "GET", "products", params={"per_page": "1", "_fields": "id"}
            )
            # An empty batch changes nothing, and WooCommerce refuses it to a key without write access.
            try:
                self._call(channel, "POST", "products/batch", json_body={})
            except ConnectorError as err:
                if isinstance(err, ConnectorRefused):
                    raise
                raise ConnectorError(
                    f"the key can read but not write ({err}); give the key Read/Write permission"
                ) from err
        except Throttled as throttled:
            raise ConnectorError(f"the store is throttling requests: {throttled}") from throttled
        except HttpFailure as failure:
            raise ConnectorError(str(failure)) from failure
        total = response.headers.get("X-WP-Total", "?")
        name = described.get("name") or base
        return (
            f"Connected to {name} ({base}), WooCommerce REST {version}: {total} products, the key can read and write."
        )

    # --- HTTP ---

    @staticmethod
    def _store_url(channel: ChannelRef) -> str:
        url = str(channel.settings.get("store_url") or "").rstrip("/")
        if not url:
            raise ConnectorError(
                "No store address: set store_url to the shop's address, e.g. https://shop.example.com."
            )
        return url

    @staticmethod
    def _api_version(channel: ChannelRef) -> str:
        return str(channel.settings.get("api_version") or default_api_version()).strip("/")

    @staticmethod
    def _check_before_push(channel: ChannelRef) -> bool:
        return not channel.settings.get("blind_overwrite", False)

    @staticmethod
    def _timeout() -> float:
        return float(sync_setting("SYNC_HTTP_TIMEOUT_S"))

    def _call(
        self,
        channel: ChannelRef,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> Any:
        payload, _ = self._call_with_response(channel, method, path, params=params, json_body=json_body)
        return payload

    def _call_with_response(
        self,
        channel: ChannelRef,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> tuple[Any, requests.Response]:
        """One authenticated request. Raises ConnectorError (credentials), Throttled or HttpFailure."""
        url = f"{self._store_url(channel)}/wp-json/{self._api_version(channel)}/{path}"
        query = list((params or {}).items())
        headers = {"Accept": "application/json"}
        key = str(channel.credentials.get("consumer_key") or "")
        secret = str(channel.credentials.get("consumer_secret") or "")
        if not key or not secret:
            raise ConnectorError("No API key: set the consumer key and consumer secret of a Read/Write REST API key.")
        auth: tuple[str, str] | None = None
        if urlsplit(url).scheme == "https":
            if channel.settings.get("query_string_auth"):
                query += [("consumer_key", key), ("consumer_secret", secret)]
            else:
                auth = (key, secret)
        else:
            # Plain HTTP: the secret never travels; the request is signed (OAuth 1.0a one-legged).
            oauth = [
                ("oauth_consumer_key", key),
                ("oauth_nonce", secrets.token_hex(16)),
                ("oauth_signature_method", "HMAC-SHA256"),
                ("oauth_timestamp", str(int(time.time()))),
            ]
            signature = oauth_signature(method, url, [*query, *oauth], secret, "HMAC-SHA256")
            query += [*oauth, ("oauth_signature", signature)]
        try:
            response = _session().request(
                method, url, params=query, json=json_body, headers=headers, auth=auth, timeout=self._timeout()
            )
        except OutboundRefused as err:
            raise transport_failure(err, path) from err
        except requests.RequestException as err:
            raise HttpFailure(f"{path}: {failure_text(err)}", connection=True) from err
        status = response.status_code
        retry_after = response.headers.get("Retry-After")
        if status == 429 or (status == 503 and retry_after):
            raise Throttled(retry_after_seconds(retry_after, default=5.0), retry_after)
        if status in (401, 403):
            raise ConnectorError(
                f"WooCommerce refused the API key ({_error_text(response)}); check the consumer key and "
                "secret, that the key has Read/Write permission and that its user may manage products and orders"
            )
        if not 200 <= status < 300:
            raise HttpFailure(f"{_error_text(response)} from {path}", retry_after=retry_after)
        try:
            return response.json(), response
        except ValueError as err:
            raise HttpFailure(f"unreadable answer from {path} (not JSON)") from err
