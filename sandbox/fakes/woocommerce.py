"""A WooCommerce store on loopback, faithful where Stockroom's connector depends on it.

What it speaks (REST API ``wc/v3``, shapes and errors as WooCommerce's own code answers them):

- ``GET /wp-json/`` (no key): the site index with its ``namespaces``.
- Authentication as ``WC_REST_Authentication``: over HTTPS (``tls=``) HTTP Basic or ``consumer_key``/
  ``consumer_secret`` in the query string; over plain HTTP only OAuth 1.0a one-legged (query string,
  form body or ``Authorization: OAuth``; HMAC-SHA1/SHA256 with ``<secret>&``, a 15-minute timestamp
  window, nonces never reused). A key WooCommerce does not know leaves the request anonymous (401
  ``woocommerce_rest_cannot_view``); a wrong secret or signature is 401
  ``woocommerce_rest_authentication_error``; a read-only key may not POST.
- ``GET /products`` (``include``, ``sku``, ``type``, ``per_page`` 1..100, ``page``, ``_fields``),
  ``GET /products/<id>``, ``GET /products/<parent>/variations``, with ``X-WP-Total``/``X-WP-TotalPages``/
  ``Link``; ``POST /products/batch`` and ``POST /products/<parent>/variations/batch`` (``update`` only):
  more than ``batch_limit`` items is 413 ``woocommerce_rest_request_entity_too_large``; an item that
  fails comes back as ``{"id", "error": {"code", "message", "data"}}`` while the others are applied
  (unknown id or a variation of another parent: ``woocommerce_rest_product_invalid_id`` /
  ``woocommerce_rest_product_variation_invalid_id``; stock management on an external product:
  ``product_external_invalid_manage_stock``; a ``stock_quantity`` that is not an integer:
  ``rest_invalid_param``; stricter than WooCommerce's batch, which would coerce it to a number).
- ``GET /orders`` (``modified_after``/``modified_before``/``after``/``before`` with ``dates_are_gmt``,
  else in the site's time zone, ``status``, ``orderby``, ``order``, paging) and ``GET /orders/<id>``.
  Paying an order (processing, on-hold, completed) lowers the stock of managed products as
  WooCommerce does; cancelling it (or sending it back to pending) puts the stock back.
- Webhooks ``order.created``, ``order.updated`` and ``order.deleted`` POSTed to ``webhook_url`` with
  WooCommerce's headers (``X-WC-Webhook-Signature``: base64 HMAC-SHA256 of the body, ``-Topic``,
  ``-Resource``, ``-Event``, ``-ID``, ``-Delivery-ID``, ``-Source``), from a background thread, never
  retried; the seventh failure in a row disables the webhook. As in WooCommerce, the delivery id
  is a hash of the webhook id and the current second.
- Order edits (``edit_order``: a line's quantity changed, a line added or removed, the stock of a paid
  order following as ``wc_maybe_adjust_line_item_product_stock`` does), refunds (``refund_order``: the
  order's ``refunds`` list ``{id, reason, total}``, ``GET /orders/<id>/refunds`` with each refund's
  ``line_items`` and their negative ``quantity``, refunded units put back in stock as the REST refund
  does with ``restock_items``), the bin (``delete_order``: status ``trash``, out of ``status=any``) and
  deletion for good (``delete_order(force=True)``: the order is gone, ``GET /orders/<id>`` is 404).
  ``status`` is a list as in ``wc/v3``, where ``any`` stops the list (``any,trash`` is ``any``).
- Webhook faults: ``lose_webhooks``, ``hold_webhooks``/``release_webhooks`` (kept back, then sent
  reversed or shuffled, some lost or sent twice: async delivery keeps no order), and ``outage``: while
  it lasts, every request answers 503 (no ``Retry-After``) as a store whose host is down.
- ``GET /system_status`` (a small part of it).
- Webhooks as ``WC_REST_Webhooks_Controller``: ``GET /webhooks`` (``status`` all/active/paused/disabled,
  paging), ``GET /webhooks/<id>``, ``POST /webhooks`` (``topic`` and ``delivery_url`` required and
  checked; ``name``, ``secret``: a secret not given is generated; a new webhook is always ``active``;
  201 with ``Location``; then the ping ``webhook_id=<id>`` is sent to the address) and ``PUT``/``POST
  /webhooks/<id>`` (topic, delivery_url, secret, status). The secret is never shown in an answer. Every
  active webhook of a topic gets each delivery; ``webhook_url`` given to the constructor (or
  ``set_webhook``) stands for hooks the merchant made by hand (ids 1-3), listed like the others.
- ``seed_catalog(n)``: n sellable variants (simple products and variations) with the problem
  classes a real catalog has (no SKU, a SKU used twice, stock not managed, stock kept on the parent).

Driven from Python (``add_product``, ``add_variation``, ``set_quantity``, ``create_order``,
``set_order_status``, ``cancel_order``, ``delete_order``, ``edit_order``, ``refund_order``,
``lose_webhooks``, ``hold_webhooks``, ``release_webhooks``, ``outage``, ``fail_next``, ``limit``,
``delay_s``, ``requests``, ``seed_catalog``, ``subscriptions``) or over HTTP under ``/_fake/``
(``manage.py fake_woocommerce``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import math
import queue
import re
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from sandbox.fakes.bucket import RequestBucket

API_PREFIX = "/wp-json/wc/v3/"
ORDER_STATUSES = ("pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed", "checkout-draft")
STOCK_HELD = {"processing", "on-hold", "completed"}  # statuses after which WooCommerce has lowered stock
STOCK_RESTORED = {"cancelled", "pending"}  # statuses whose hooks put reduced stock back
OAUTH_WINDOW_S = 15 * 60
WEBHOOK_IDS = {"order.created": 1, "order.updated": 2, "order.deleted": 3, "order.restored": 4}
MAX_DELIVERY_FAILURES = 5
WEBHOOK_RESOURCES = ("coupon", "customer", "order", "product")
WEBHOOK_EVENTS = ("created", "updated", "deleted", "restored")
WEBHOOK_STATUSES = ("active", "paused", "disabled")
# The WordPress actions behind each order topic (WC_Webhook::get_topic_hooks).
ORDER_TOPIC_HOOKS = {
    "order.created": ["woocommerce_new_order"],
    "order.updated": ["woocommerce_update_order", "woocommerce_order_refunded"],
    "order.deleted": ["wp_trash_post"],
    "order.restored": ["untrashed_post"],
}


def rfc3986(value: str) -> str:
    return quote(value, safe="")


def wc_date(moment: datetime, offset: timedelta = timedelta(0)) -> str:
    """WooCommerce writes dates without a zone: the ``_gmt`` fields in UTC, the others in the site's zone."""
    return (moment.astimezone(UTC) + offset).strftime("%Y-%m-%dT%H:%M:%S")


def now_s() -> datetime:
    """WooCommerce keeps dates to the second."""
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class FakeProduct:
    id: int
    type: str  # simple, variable, external, grouped, variation
    sku: str
    name: str
    manage_stock: bool | str  # a variation may say "parent"
    stock_quantity: int | None
    parent_id: int = 0
    created: datetime = field(default_factory=now_s)
    modified: datetime = field(default_factory=now_s)
    refusal: tuple[str, str] | None = None  # (code, message) answered when stock management is asked for


@dataclass
class FakeWebhook:
    id: int
    name: str
    topic: str
    delivery_url: str
    secret: str
    status: str = "active"  # active, paused, disabled (WooCommerce disables after repeated failures)
    created: datetime = field(default_factory=now_s)
    modified: datetime = field(default_factory=now_s)
    failures: int = 0


@dataclass(frozen=True)
class SeededVariant:
    """One sellable variant ``seed_catalog`` made: what a catalog read should find."""

    sku: str
    external_id: str  # "123" or "parent/variation", as a listing holds it
    quantity: int | None  # None: stock not managed
    problem: str = ""  # "", no_sku, duplicate_sku, untracked


@dataclass
class FakeLine:
    id: int
    product_id: int
    variation_id: int
    quantity: int
    sku: str
    name: str
    reduced: int = 0  # units the order took off the product's stock (WooCommerce's ``_reduced_stock``)


@dataclass
class FakeRefund:
    id: int
    created: datetime
    reason: str
    lines: list[tuple[FakeLine, int]]  # (the order's line, units refunded)


@dataclass
class FakeOrder:
    id: int
    status: str
    lines: list[FakeLine]
    created: datetime
    modified: datetime
    stock_reduced: bool = False
    trashed: bool = False
    refunds: list[FakeRefund] = field(default_factory=list)
    completed: datetime | None = None  # when it was (last) marked completed


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


def _error(status: int, code: str, message: str, **data: Any) -> _Reply:
    return _Reply(status, {"code": code, "message": message, "data": {"status": status, **data}})


@dataclass
class _Injected:
    status: int
    count: int
    retry_after: str | None
    path_contains: str | None


class WooCommerceFake:
    """A threaded HTTP server standing in for a WooCommerce store. Thread-safe; ``start()`` returns self."""

    def __init__(
        self,
        *,
        consumer_key: str | None = None,
        consumer_secret: str | None = None,
        permissions: str = "read_write",
        webhook_url: str = "",
        webhook_secret: str = "wh-secret",
        site_name: str = "Fake WooCommerce store",
        host: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[str, str] | None = None,  # (certificate file, key file): serve HTTPS
        batch_limit: int = 100,
        utc_offset_h: float = 2.0,  # the site's time zone (WordPress > Settings > General)
        wc_version: str = "10.3.0",
    ) -> None:
        self.consumer_key = consumer_key or "ck_" + secrets.token_hex(20)
        self.consumer_secret = consumer_secret or "cs_" + secrets.token_hex(20)
        self.permissions = permissions
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.site_name = site_name
        self.batch_limit = batch_limit
        self.offset = timedelta(hours=utc_offset_h)
        self.wc_version = wc_version
        self.lock = threading.RLock()
        self.products: dict[int, FakeProduct] = {}
        self.orders: dict[int, FakeOrder] = {}
        self._next_id = 100  # posts share one id sequence in WordPress: products, variations and orders
        self._nonces: dict[str, float] = {}
        self._log: list[dict[str, Any]] = []
        self._deliveries: list[dict[str, Any]] = []
        self._pings: list[dict[str, Any]] = []
        self._injected: list[_Injected] = []
        self._bucket: RequestBucket | None = None
        self._lose = 0
        self._held: list[tuple[str, int, bytes]] | None = None  # deliveries kept back (hold_webhooks)
        self.down = False  # an outage: every request is a 503
        self.lost_held = 0  # held deliveries release_webhooks dropped
        self.webhooks: dict[int, FakeWebhook] = {}
        self._children: dict[int, list[int]] = {}  # variable product id -> its variation ids
        self._outbox: queue.Queue[tuple[str, int, bytes] | None] = queue.Queue()
        self.delivered = threading.Condition(self.lock)
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self.tls = tls is not None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._threads: list[threading.Thread] = []
        # A slow store: batch writes wait this long before they are applied (and the event says one arrived).
        self.delay_s = 0.0
        self.batch_arrived = threading.Event()
        if webhook_url:
            self.set_webhook(webhook_url, webhook_secret)

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The store's address (its WordPress home URL), without a trailing slash."""
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"{'https' if self.tls else 'http'}://{name}:{port}"

    def start(self) -> WooCommerceFake:
        serve = functools.partial(self._server.serve_forever, poll_interval=0.1)  # stop() returns quickly
        for target, name in ((serve, "woocommerce-fake"), (self._deliver_loop, "woo-webhooks")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def serve_forever(self) -> None:
        deliverer = threading.Thread(target=self._deliver_loop, name="woo-webhooks", daemon=True)
        deliverer.start()
        self._threads.append(deliverer)
        self._server.serve_forever()

    def stop(self) -> None:
        self._outbox.put(None)
        if self._threads:  # shutdown() waits for serve_forever, so only when it runs
            self._server.shutdown()
        self._server.server_close()

    def channel_settings(self, **extra: Any) -> dict[str, Any]:
        return {"store_url": self.url, "api_version": "wc/v3", **extra}

    def channel_credentials(self) -> dict[str, str]:
        return {
            "consumer_key": self.consumer_key,
            "consumer_secret": self.consumer_secret,
            "webhook_secret": self.webhook_secret,
        }

    # --- the catalog ---------------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add_product(
        self,
        *,
        sku: str = "",
        name: str = "",
        stock_quantity: int | None = None,
        manage_stock: bool | None = None,
        type: str = "simple",
    ) -> int:
        """A product; it counts stock when given a quantity (or ``manage_stock=True``). Returns its id."""
        with self.lock:
            product_id = self._new_id()
            managed = manage_stock if manage_stock is not None else stock_quantity is not None
            self.products[product_id] = FakeProduct(
                id=product_id,
                type=type,
                sku=sku,
                name=name or sku or f"Product {product_id}",
                manage_stock=bool(managed) and type not in ("external", "grouped"),
                stock_quantity=stock_quantity if managed else None,
            )
            return product_id

    def add_variation(
        self,
        parent_id: int,
        *,
        sku: str = "",
        stock_quantity: int | None = None,
        manage_stock: bool | str | None = None,
    ) -> int:
        """A variation of a variable product (``manage_stock="parent"`` counts on the parent). Returns its id."""
        with self.lock:
            parent = self.products[parent_id]
            parent.type = "variable"
            variation_id = self._new_id()
            managed = manage_stock if manage_stock is not None else stock_quantity is not None
            self.products[variation_id] = FakeProduct(
                id=variation_id,
                type="variation",
                sku=sku,
                name=f"{parent.name} - {sku or variation_id}",
                manage_stock=managed,
                stock_quantity=stock_quantity if managed is True else None,
                parent_id=parent_id,
            )
            self._children.setdefault(parent_id, []).append(variation_id)
            return variation_id

    def quantity(self, product_id: int) -> int | None:
        """What the store shows: None when the product does not count stock (or does not exist)."""
        with self.lock:
            product = self.products.get(product_id)
            if product is None:
                return None
            counting = self._stock_holder(product)
            return None if counting is None else counting.stock_quantity

    def product(self, product_id: int) -> dict[str, Any]:
        with self.lock:
            return self._product_json(self.products[product_id])

    def set_quantity(self, product_id: int, quantity: int) -> None:
        """A hand edit in the WordPress admin."""
        with self.lock:
            product = self.products[product_id]
            product.manage_stock, product.stock_quantity, product.modified = True, quantity, now_s()

    def refuse_stock(self, product_id: int, code: str = "product_invalid_manage_stock", message: str = "") -> None:
        """From now on the store refuses stock management for this product (a plugin's veto, say)."""
        with self.lock:
            self.products[product_id].refusal = (code, message or "This product cannot be stock managed.")

    def _stock_holder(self, product: FakeProduct) -> FakeProduct | None:
        if product.manage_stock == "parent":
            parent = self.products.get(product.parent_id)
            return parent if parent is not None and parent.manage_stock is True else None
        return product if product.manage_stock is True else None

    def seed_catalog(
        self,
        variants: int,
        *,
        per_parent: int = 5,
        simple_every: int = 4,
        no_sku: int = 0,
        duplicate_sku: int = 0,
        untracked: int = 0,
        parent_stock: int = 0,
        prefix: str = "SKU",
    ) -> list[SeededVariant]:
        """``variants`` sellable variants: every ``simple_every``-th a simple product, the others variations of
        variable products with ``per_parent`` variations each. The first ``no_sku`` have no SKU, the next
        ``duplicate_sku`` take the SKU of one of the last variants, the next ``untracked`` do not manage stock,
        and the next ``parent_stock`` variations count stock on their parent (``manage_stock: "parent"``).
        SKUs are ``<prefix>-00001``...; quantities ``index * 7 % 50``. Returns what was made, in order."""
        made: list[SeededVariant] = []
        with self.lock:
            parent: FakeProduct | None = None
            taken = 0
            for index in range(variants):
                sku = f"{prefix}-{index + 1:05d}"
                problem = ""
                if index < no_sku:
                    sku, problem = "", "no_sku"
                elif index < no_sku + duplicate_sku:
                    # the SKU of one of the last variants, made later: two variants then share it
                    sku, problem = f"{prefix}-{variants - (index - no_sku):05d}", "duplicate_sku"
                elif index < no_sku + duplicate_sku + untracked:
                    problem = "untracked"
                on_parent = not problem and index < no_sku + duplicate_sku + untracked + parent_stock
                quantity = None if problem == "untracked" else index * 7 % 50
                if simple_every and index % simple_every == 0 and not on_parent:
                    product_id = self._new_id()
                    self.products[product_id] = FakeProduct(
                        id=product_id,
                        type="simple",
                        sku=sku,
                        name=f"Product {sku or product_id}",
                        manage_stock=quantity is not None,
                        stock_quantity=quantity,
                    )
                    made.append(SeededVariant(sku, str(product_id), quantity, problem))
                    continue
                if parent is None or taken >= per_parent or (on_parent and parent.manage_stock is not True):
                    parent_id = self._new_id()
                    parent = self.products[parent_id] = FakeProduct(
                        id=parent_id,
                        type="variable",
                        sku="",
                        name=f"Variable {parent_id}",
                        manage_stock=on_parent,
                        stock_quantity=quantity if on_parent else None,
                    )
                    taken = 0
                variation_id = self._new_id()
                if on_parent:
                    quantity = parent.stock_quantity
                self.products[variation_id] = FakeProduct(
                    id=variation_id,
                    type="variation",
                    sku=sku,
                    name=f"{parent.name} - {sku or variation_id}",
                    manage_stock="parent" if on_parent else quantity is not None,
                    stock_quantity=None if on_parent else quantity,
                    parent_id=parent.id,
                )
                self._children.setdefault(parent.id, []).append(variation_id)
                taken += 1
                made.append(SeededVariant(sku, f"{parent.id}/{variation_id}", quantity, problem))
        return made

    # --- orders --------------------------------------------------------------------------------

    def create_order(self, lines: Sequence[tuple[int | str, int]], *, status: str = "processing") -> int:
        """An order as a checkout makes it. ``lines``: (product id, or "parent/variation", quantity)."""
        with self.lock:
            order_id = self._new_id()
            created = now_s()
            items = [self._line(ref, quantity) for ref, quantity in lines]
            order = FakeOrder(id=order_id, status=status, lines=items, created=created, modified=created)
            order.completed = created if status == "completed" else None
            self.orders[order_id] = order
            self._stock_follows(order)
            self._enqueue("order.created", order)
            return order_id

    def _line(self, ref: int | str, quantity: int) -> FakeLine:
        parent_text, _, variation_text = str(ref).partition("/")
        variation_id = int(variation_text) if variation_text else 0
        product_id = int(parent_text)
        sold = self.products[variation_id or product_id]
        return FakeLine(self._new_id(), product_id, variation_id, quantity, sold.sku, sold.name)

    def edit_order(self, order_id: int, lines: Mapping[int | str, int]) -> None:
        """The merchant edits the order's items: ``{product id or "parent/variation": quantity}``; 0 removes the
        line, a product not on the order adds one. A paid order's stock follows the change."""
        with self.lock:
            order = self.orders[order_id]
            for ref, quantity in lines.items():
                line = next((li for li in order.lines if self._ref(li) == str(ref)), None)
                if line is None:
                    if quantity > 0:
                        line = self._line(ref, quantity)
                        order.lines.append(line)
                        self._adjust_stock(order, line, quantity)
                    continue
                self._adjust_stock(order, line, quantity - line.quantity)
                line.quantity = quantity
                if quantity <= 0:
                    order.lines.remove(line)
            order.modified = now_s()
            self._enqueue("order.updated", order)

    def refund_order(self, order_id: int, lines: Mapping[int | str, int], *, reason: str = "") -> int:
        """A refund of these units (``{ref: units}``), restocked as the REST API's refunds are; the order keeps
        its status and its lines (WooCommerce shows the refund beside them). Returns the refund's id."""
        with self.lock:
            order = self.orders[order_id]
            refunded = []
            for ref, units in lines.items():
                line = next(li for li in order.lines if self._ref(li) == str(ref))
                refunded.append((line, units))
                if line.reduced:
                    back = min(units, line.reduced)
                    self._move_stock(line, back)
                    line.reduced -= back
            refund = FakeRefund(self._new_id(), now_s(), reason, refunded)
            order.refunds.append(refund)
            order.modified = now_s()
            self._enqueue("order.updated", order)  # woocommerce_order_refunded is an order.updated hook
            return refund.id

    @staticmethod
    def _ref(line: FakeLine) -> str:
        return f"{line.product_id}/{line.variation_id}" if line.variation_id else str(line.product_id)

    def _move_stock(self, line: FakeLine, delta: int) -> None:
        product = self.products.get(line.variation_id or line.product_id)
        holder = None if product is None else self._stock_holder(product)
        if holder is not None and holder.stock_quantity is not None:
            holder.stock_quantity += delta
            holder.modified = now_s()

    def _adjust_stock(self, order: FakeOrder, line: FakeLine, more: int) -> None:
        """An edited line of a paid order: its stock follows (``wc_maybe_adjust_line_item_product_stock``)."""
        if order.stock_reduced and more:
            self._move_stock(line, -more)
            line.reduced = max(0, line.reduced + more)

    def set_order_status(self, order_id: int, status: str) -> None:
        if status not in ORDER_STATUSES:
            raise ValueError(f"not a WooCommerce order status: {status}")
        with self.lock:
            order = self.orders[order_id]
            order.status, order.modified = status, now_s()
            order.completed = order.modified if status == "completed" else None
            self._stock_follows(order)
            self._enqueue("order.updated", order)

    def cancel_order(self, order_id: int) -> None:
        self.set_order_status(order_id, "cancelled")

    def complete_order(self, order_id: int) -> None:
        self.set_order_status(order_id, "completed")

    def delete_order(self, order_id: int, *, force: bool = False) -> None:
        """Move the order to the bin (``force``: delete it for good): ``order.deleted`` carries only its id.

        A binned order is out of ``status=any`` and shown with ``status=trash``; a deleted one is gone.
        Neither gives its stock back (WooCommerce restocks on cancel, not on delete)."""
        with self.lock:
            order = self.orders[order_id]
            order.trashed, order.modified = True, now_s()
            self._enqueue("order.deleted", order)
            if force:
                del self.orders[order_id]

    def order(self, order_id: int) -> dict[str, Any]:
        with self.lock:
            return self._order_json(self.orders[order_id])

    def _stock_follows(self, order: FakeOrder) -> None:
        """WooCommerce lowers stock once an order is paid or on hold, and puts back what it took (less what
        refunds restocked already) when it is cancelled."""
        if order.status in STOCK_HELD and not order.stock_reduced:
            order.stock_reduced = True
            for line in order.lines:
                refunded = sum(units for refund in order.refunds for li, units in refund.lines if li is line)
                line.reduced = max(0, line.quantity - refunded)
                self._move_stock(line, -line.reduced)
        elif order.status in STOCK_RESTORED and order.stock_reduced:
            order.stock_reduced = False
            for line in order.lines:
                self._move_stock(line, line.reduced)
                line.reduced = 0

    # --- webhooks ------------------------------------------------------------------------------

    def set_webhook(self, url: str, secret: str | None = None) -> None:
        """The merchant's hand-made order webhooks (ids 1-3) now call ``url``, active again."""
        with self.lock:
            self.webhook_url = url
            if secret is not None:
                self.webhook_secret = secret
            for topic in ("order.created", "order.updated", "order.deleted"):
                hook_id = WEBHOOK_IDS[topic]
                hook = self.webhooks.get(hook_id)
                if hook is None:
                    hook = self.webhooks[hook_id] = FakeWebhook(
                        id=hook_id, name=f"Order {topic.split('.')[1]}", topic=topic, delivery_url=url, secret=""
                    )
                hook.delivery_url, hook.secret = url, self.webhook_secret
                hook.status, hook.failures, hook.modified = "active", 0, now_s()

    @property
    def disabled_topics(self) -> set[str]:
        """Topics of webhooks WooCommerce disabled after failed deliveries."""
        with self.lock:
            return {hook.topic for hook in self.webhooks.values() if hook.status == "disabled"}

    def subscriptions(self, topic: str | None = None) -> list[FakeWebhook]:
        """The webhooks as stored (secrets included), oldest first."""
        with self.lock:
            return [
                FakeWebhook(**vars(hook))
                for hook in sorted(self.webhooks.values(), key=lambda h: h.id)
                if topic is None or hook.topic == topic
            ]

    def lose_webhooks(self, count: int = 1) -> None:
        """The next ``count`` deliveries never arrive (a host that dropped them)."""
        with self.lock:
            self._lose += count

    def deliveries(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(d) for d in self._deliveries]

    def wait_for_deliveries(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.delivered:
            while len(self._deliveries) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._deliveries)} of {count} webhook deliveries after {timeout} s")
                self.delivered.wait(left)
            return [dict(d) for d in self._deliveries]

    def ping(self) -> int:
        """What WooCommerce sends when a webhook is saved as active: an unsigned ``webhook_id=<id>``."""
        response = requests.post(
            self.webhook_url,
            data=f"webhook_id={WEBHOOK_IDS['order.created']}",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": self._user_agent(),
            },
            timeout=10,
        )
        return response.status_code

    def _user_agent(self) -> str:
        return f"WooCommerce/{self.wc_version} Hookshot (WordPress/6.8)"

    def _enqueue(self, topic: str, order: FakeOrder) -> None:
        payload = {"id": order.id} if topic == "order.deleted" else self._order_json(order)
        item = (topic, order.id, json.dumps(payload, separators=(",", ":")).encode())
        with self.lock:
            if self._held is not None:
                self._held.append(item)
                return
        self._outbox.put(item)

    def hold_webhooks(self) -> None:
        """Keep every delivery back until ``release_webhooks`` (WooCommerce delivers through a queue)."""
        with self.lock:
            if self._held is None:
                self._held = []

    def release_webhooks(
        self,
        *,
        reverse: bool = False,
        rng: Any = None,
        lose: float = 0.0,
        repeat: float = 0.0,
        window: int = 6,
        keep_holding: bool = False,
    ) -> int:
        """Send what was held: in order, reversed, or (``rng``, a ``random.Random``) shuffled within windows
        of ``window``, a share ``lose`` never arriving and a share ``repeat`` arriving twice. Returns how
        many deliveries were sent."""
        with self.lock:
            held, self._held = (self._held or []), ([] if keep_holding else None)
        if reverse:
            held.reverse()
        out: list[tuple[str, int, bytes]] = []
        lost = 0
        for item in held:
            if rng is not None and rng.random() < lose:
                lost += 1
                continue
            out += [item] * (2 if rng is not None and rng.random() < repeat else 1)
        if rng is not None:
            for start in range(0, len(out), window):
                part = out[start : start + window]
                rng.shuffle(part)
                out[start : start + window] = part
        with self.lock:
            self.lost_held += lost
        for item in out:
            self._outbox.put(item)
        return len(out)

    def outage(self, down: bool = True) -> None:
        """The store's host is down (``True``) or back (``False``): meanwhile every request is a 503."""
        with self.lock:
            self.down = down

    def _deliver_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            topic, resource_id, body = item
            if topic == "ping":  # a webhook just created: resource_id is the webhook's id
                self._deliver_ping(resource_id)
                continue
            with self.lock:
                hooks = [
                    (hook.id, hook.delivery_url, hook.secret)
                    for hook in sorted(self.webhooks.values(), key=lambda h: h.id)
                    if hook.topic == topic and hook.status == "active" and hook.delivery_url
                ]
            for hook_id, url, secret in hooks:
                self._deliver(hook_id, url, secret, topic, resource_id, body)

    def _deliver_ping(self, hook_id: int) -> None:
        with self.lock:
            hook = self.webhooks.get(hook_id)
            url = hook.delivery_url if hook is not None else ""
        if not url:
            return
        record: dict[str, Any] = {"topic": "ping", "webhook_id": hook_id, "at": time.time()}
        try:
            response = requests.post(
                url,
                data=f"webhook_id={hook_id}",
                headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": self._user_agent()},
                timeout=10,
                allow_redirects=False,
            )
            record["status"] = response.status_code
        except requests.RequestException as err:
            record["status"] = type(err).__name__
        with self.delivered:
            self._pings.append(record)
            self.delivered.notify_all()

    def pings(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(p) for p in self._pings]

    def _deliver(self, hook_id: int, url: str, secret: str, topic: str, order_id: int, body: bytes) -> None:
        with self.lock:
            lost = self._lose > 0
            if lost:
                self._lose -= 1
        # WooCommerce: wp_hash( webhook id . strtotime('now') ), so one webhook's deliveries within a
        # second share their id.
        delivery_id = hashlib.md5(f"{hook_id}{int(time.time())}".encode()).hexdigest()
        record: dict[str, Any] = {
            "topic": topic,
            "order_id": order_id,
            "delivery_id": delivery_id,
            "webhook_id": hook_id,
            "at": time.time(),
        }
        if lost:
            record["status"] = "lost"
        else:
            resource, event = topic.split(".")
            headers = {
                "Content-Type": "application/json",
                "User-Agent": self._user_agent(),
                "X-WC-Webhook-Source": self.url + "/",
                "X-WC-Webhook-Topic": topic,
                "X-WC-Webhook-Resource": resource,
                "X-WC-Webhook-Event": event,
                "X-WC-Webhook-Signature": base64.b64encode(
                    hmac.new(secret.encode(), body, hashlib.sha256).digest()
                ).decode(),
                "X-WC-Webhook-ID": str(hook_id),
                "X-WC-Webhook-Delivery-ID": delivery_id,
            }
            try:
                response = requests.post(url, data=body, headers=headers, timeout=10, allow_redirects=False)
                record["status"] = response.status_code
                ok = 200 <= response.status_code < 303
            except requests.RequestException as err:
                record["status"] = f"{type(err).__name__}"
                ok = False
            with self.lock:
                hook = self.webhooks.get(hook_id)
                if hook is not None:
                    if ok:
                        hook.failures = 0
                    elif hook.failures > MAX_DELIVERY_FAILURES:
                        hook.status = "disabled"
                    else:
                        hook.failures += 1
        with self.delivered:
            self._deliveries.append(record)
            self.delivered.notify_all()

    # --- faults and the log --------------------------------------------------------------------

    def fail_next(
        self, status: int = 503, *, count: int = 1, retry_after: str | None = None, path_contains: str | None = None
    ) -> None:
        """The host answers ``status`` to the next ``count`` API requests (matching ``path_contains``)."""
        with self.lock:
            self._injected.append(_Injected(status, count, retry_after, path_contains))

    def limit(self, rate: float, burst: int) -> None:
        """A host's firewall: more than ``rate`` requests a second (after ``burst``) get 429 + Retry-After."""
        with self.lock:
            self._bucket = RequestBucket(rate, burst)

    def requests(self, path_contains: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self._log if path_contains is None or path_contains in r["path"]]

    # --- JSON shapes ---------------------------------------------------------------------------

    def _dates(self, prefix: str, moment: datetime | None) -> dict[str, str | None]:
        if moment is None:
            return {prefix: None, f"{prefix}_gmt": None}
        return {prefix: wc_date(moment, self.offset), f"{prefix}_gmt": wc_date(moment)}

    def _product_json(self, product: FakeProduct) -> dict[str, Any]:
        holder = self._stock_holder(product)
        quantity = None if holder is None else holder.stock_quantity
        # Without stock management a product is simply "in stock"; with it, its count decides.
        stock_status = "outofstock" if holder is not None and (quantity or 0) <= 0 else "instock"
        data: dict[str, Any] = {
            "id": product.id,
            "name": product.name,
            "slug": re.sub(r"[^a-z0-9]+", "-", product.name.lower()).strip("-"),
            "permalink": f"{self.url}/?p={product.id}",
            **self._dates("date_created", product.created),
            **self._dates("date_modified", product.modified),
            "type": product.type,
            "status": "publish",
            "sku": product.sku,
            "price": "10.00",
            "regular_price": "10.00",
            "manage_stock": product.manage_stock,
            "stock_quantity": quantity,
            "stock_status": stock_status,
            "backorders": "no",
            "backorders_allowed": False,
            "parent_id": product.parent_id,
            "attributes": [],
            "meta_data": [],
        }
        if product.type == "variation":
            data.pop("type")
            data.pop("slug")
        else:  # every product shows its variations' ids, an empty list but for a variable product
            data["variations"] = sorted(self._children.get(product.id, []))
        return data

    def _order_json(self, order: FakeOrder) -> dict[str, Any]:
        total = sum(line.quantity * 10 for line in order.lines)
        paid = order.created if order.status in STOCK_HELD else None
        return {
            "id": order.id,
            "parent_id": 0,
            "status": "trash" if order.trashed else order.status,
            "currency": "EUR",
            "version": self.wc_version,
            "prices_include_tax": False,
            **self._dates("date_created", order.created),
            **self._dates("date_modified", order.modified),
            **self._dates("date_paid", paid),
            **self._dates("date_completed", order.completed if order.status == "completed" else None),
            "discount_total": "0.00",
            "shipping_total": "0.00",
            "total": f"{total:.2f}",
            "total_tax": "0.00",
            "customer_id": 0,
            "order_key": f"wc_order_{hashlib.sha1(str(order.id).encode()).hexdigest()[:13]}",
            "billing": {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"},
            "shipping": {"first_name": "Ada", "last_name": "Lovelace"},
            "payment_method": "bacs",
            "payment_method_title": "Direct bank transfer",
            "created_via": "checkout",
            "number": str(order.id),
            "line_items": [
                {
                    "id": line.id,
                    "name": line.name,
                    "product_id": line.product_id,
                    "variation_id": line.variation_id,
                    "quantity": line.quantity,
                    "tax_class": "",
                    "subtotal": f"{line.quantity * 10:.2f}",
                    "total": f"{line.quantity * 10:.2f}",
                    "sku": line.sku,
                    "price": 10,
                    "meta_data": [],
                }
                for line in order.lines
            ],
            "shipping_lines": [],
            "fee_lines": [],
            "coupon_lines": [],
            "refunds": [
                {"id": refund.id, "reason": refund.reason, "total": f"-{self._refund_amount(refund):.2f}"}
                for refund in order.refunds
            ],
        }

    @staticmethod
    def _refund_amount(refund: FakeRefund) -> int:
        return sum(units * 10 for _, units in refund.lines)

    def _refund_json(self, refund: FakeRefund) -> dict[str, Any]:
        """As ``WC_REST_Order_Refunds_Controller`` answers: the refunded lines with negative quantities."""
        return {
            "id": refund.id,
            **self._dates("date_created", refund.created),
            "amount": f"{self._refund_amount(refund):.2f}",
            "reason": refund.reason,
            "refunded_by": 1,
            "refunded_payment": False,
            "meta_data": [],
            "line_items": [
                {
                    "id": refund.id * 100 + n,
                    "name": line.name,
                    "product_id": line.product_id,
                    "variation_id": line.variation_id,
                    "quantity": -units,
                    "tax_class": "",
                    "subtotal": f"-{units * 10:.2f}",
                    "subtotal_tax": "0.00",
                    "total": f"-{units * 10:.2f}",
                    "total_tax": "0.00",
                    "taxes": [],
                    "meta_data": [{"id": refund.id * 100 + n, "key": "_refunded_item_id", "value": str(line.id)}],
                    "sku": line.sku,
                    "price": -10,
                }
                for n, (line, units) in enumerate(refund.lines)
            ],
        }

    # --- the HTTP side -------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        parts = urlsplit(target)
        path = parts.path
        query = parse_qsl(parts.query, keep_blank_values=True)
        if path.startswith("/_fake/"):
            return self._control(method, path, body)
        reply = self._admit(path)
        if reply is None and self.down:
            reply = _Reply(503, raw=b"<html><body>Service Unavailable</body></html>")
        if reply is None:
            reply = self._serve(method, path, query, headers, body)
        with self.lock:
            self._log.append(
                {
                    "at": time.time(),
                    "method": method,
                    "path": path,
                    "query": dict(query),
                    "status": reply.status,
                    "items": self._count_items(body) if method == "POST" else 0,
                }
            )
        return reply

    @staticmethod
    def _count_items(body: bytes) -> int:
        try:
            payload = json.loads(body or b"{}")
            return sum(len(payload.get(k) or []) for k in ("create", "update", "delete"))
        except (ValueError, AttributeError, TypeError):
            return 0

    def _admit(self, path: str) -> _Reply | None:
        with self.lock:
            for injected in self._injected:
                if injected.count > 0 and (injected.path_contains is None or injected.path_contains in path):
                    injected.count -= 1
                    headers = {"Retry-After": injected.retry_after} if injected.retry_after else {}
                    self._injected = [i for i in self._injected if i.count > 0]
                    if injected.status == 429:
                        return _Reply(429, raw=b"Too Many Requests", headers=headers)
                    return _Reply(
                        injected.status, raw=b"<html><body>Service Unavailable</body></html>", headers=headers
                    )
            if self._bucket is not None:
                wait = self._bucket.take()
                if wait > 0:
                    return _Reply(429, raw=b"Too Many Requests", headers={"Retry-After": str(max(1, math.ceil(wait)))})
        return None

    def _serve(
        self, method: str, path: str, query: list[tuple[str, str]], headers: Mapping[str, str], body: bytes
    ) -> _Reply:
        if path.rstrip("/") == "/wp-json":
            return _Reply(
                200,
                {
                    "name": self.site_name,
                    "description": "Just another WordPress site",
                    "url": self.url,
                    "home": self.url,
                    "namespaces": ["oembed/1.0", "wc/v1", "wc/v2", "wc/v3", "wc/store/v1", "wp/v2"],
                    "authentication": [],
                },
            )
        if not path.startswith(API_PREFIX):
            return _error(404, "rest_no_route", "No route was found matching the URL and request method.")
        route = path[len(API_PREFIX) :].strip("/")
        user, auth_error = self._authenticate(method, path, query, headers, body)
        if auth_error is not None:
            return auth_error
        if user is None:
            if method == "POST":
                return _error(
                    401,
                    "woocommerce_rest_cannot_batch",
                    "Sorry, you are not allowed to batch manipulate this resource.",
                )
            return _error(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        if method in ("POST", "PUT", "PATCH", "DELETE") and self.permissions not in ("write", "read_write"):
            return _error(
                401, "woocommerce_rest_authentication_error", "The API key provided does not have write permissions."
            )
        if method == "GET" and self.permissions not in ("read", "read_write"):
            return _error(
                401, "woocommerce_rest_authentication_error", "The API key provided does not have read permissions."
            )
        params = dict(query)
        if method == "POST" and route.endswith("batch"):
            self.batch_arrived.set()
            if self.delay_s:
                time.sleep(self.delay_s)
        with self.lock:
            if method == "GET":
                if route == "products":
                    return self._list_products(params, parent_id=None)
                if match := re.fullmatch(r"products/(\d+)/variations", route):
                    return self._list_products(params, parent_id=int(match.group(1)))
                if match := re.fullmatch(r"products/(\d+)", route):
                    product = self.products.get(int(match.group(1)))
                    if product is None or product.type == "variation":
                        return _error(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
                    return _Reply(200, self._fields(self._product_json(product), params))
                if route == "orders":
                    return self._list_orders(params)
                if match := re.fullmatch(r"orders/(\d+)/refunds", route):
                    order = self.orders.get(int(match.group(1)))
                    if order is None:
                        return _error(404, "woocommerce_rest_invalid_order_id", "Invalid order ID.")
                    refunds = sorted(order.refunds, key=lambda r: r.id, reverse=params.get("order", "desc") != "asc")
                    return self._page(refunds, params, f"{API_PREFIX}orders/{order.id}/refunds", self._refund_json)
                if match := re.fullmatch(r"orders/(\d+)", route):
                    order = self.orders.get(int(match.group(1)))
                    if order is None:
                        return _error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
                    return _Reply(200, self._fields(self._order_json(order), params))
                if route == "system_status":
                    return _Reply(200, self._system_status())
                if route == "webhooks":
                    return self._list_webhooks(params)
                if match := re.fullmatch(r"webhooks/(\d+)", route):
                    hook = self.webhooks.get(int(match.group(1)))
                    if hook is None:
                        return _error(404, "woocommerce_rest_shop_webhook_invalid_id", "Invalid ID.")
                    return _Reply(200, self._fields(self._webhook_json(hook), params))
            if method in ("POST", "PUT", "PATCH") and (match := re.fullmatch(r"webhooks/(\d+)", route)):
                return self._update_webhook(int(match.group(1)), body)
            if method == "POST" and route == "webhooks":
                return self._create_webhook(body)
            if method == "POST":
                if route == "products/batch":
                    return self._batch(body, parent_id=None)
                if match := re.fullmatch(r"products/(\d+)/variations/batch", route):
                    return self._batch(body, parent_id=int(match.group(1)))
        return _error(404, "rest_no_route", "No route was found matching the URL and request method.")

    # --- authentication ---

    def _authenticate(
        self, method: str, path: str, query: list[tuple[str, str]], headers: Mapping[str, str], body: bytes
    ) -> tuple[str | None, _Reply | None]:
        """(the key's user or None for anonymous, an error reply): WC_REST_Authentication's order of checks."""
        params = dict(query)
        if self.tls:
            key, secret = params.get("consumer_key", ""), params.get("consumer_secret", "")
            authorization = headers.get("Authorization", "")
            if not (key and secret) and authorization.startswith("Basic "):
                try:
                    key, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    key = secret = ""
            if key and secret and key == self.consumer_key:
                if not hmac.compare_digest(secret, self.consumer_secret):
                    return None, _error(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")
                return "shop_manager", None
        return self._oauth(method, path, query, headers, body)

    def _oauth(
        self, method: str, path: str, query: list[tuple[str, str]], headers: Mapping[str, str], body: bytes
    ) -> tuple[str | None, _Reply | None]:
        params = dict(query)
        if "application/x-www-form-urlencoded" in headers.get("Content-Type", ""):
            params.update(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        authorization = headers.get("Authorization", "").strip()
        if authorization.startswith("OAuth "):
            for name, quoted, bare in re.findall(r'(oauth_[a-z_-]*)=(?:"([^"]*)"|([^,]*))', authorization):
                params[name] = unquote(quoted or bare)
        required = ["oauth_consumer_key", "oauth_timestamp", "oauth_nonce", "oauth_signature", "oauth_signature_method"]
        missing = [name for name in required if not params.get(name)]
        if len(missing) == len(required):
            return None, None  # not even trying: anonymous
        if missing:
            label = "parameter" if len(missing) == 1 else "parameters"
            return None, _error(
                401, "woocommerce_rest_authentication_missing_parameter", f"Missing OAuth {label} {', '.join(missing)}"
            )
        if params["oauth_consumer_key"] != self.consumer_key:
            return None, _error(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        given = params.pop("oauth_signature").replace(" ", "+")
        algorithm = params["oauth_signature_method"]
        if algorithm not in ("HMAC-SHA1", "HMAC-SHA256"):
            return None, _error(
                401, "woocommerce_rest_authentication_error", "Invalid signature - signature method is invalid."
            )
        pairs = "&".join(f"{rfc3986(k)}={rfc3986(v)}" for k, v in sorted(params.items()))
        base = "&".join([method.upper(), rfc3986(self.url + path), rfc3986(pairs)])
        digest = hashlib.sha256 if algorithm == "HMAC-SHA256" else hashlib.sha1
        expected = base64.b64encode(
            hmac.new(f"{self.consumer_secret}&".encode(), base.encode(), digest).digest()
        ).decode()
        if not hmac.compare_digest(expected, given):
            return None, _error(
                401, "woocommerce_rest_authentication_error", "Invalid signature - provided signature does not match."
            )
        try:
            stamp = int(params["oauth_timestamp"])
        except ValueError:
            stamp = 0
        now = time.time()
        if abs(now - stamp) > OAUTH_WINDOW_S:
            return None, _error(401, "woocommerce_rest_authentication_error", "Invalid timestamp.")
        with self.lock:
            self._nonces = {n: t for n, t in self._nonces.items() if t >= now - OAUTH_WINDOW_S}
            if params["oauth_nonce"] in self._nonces:
                return None, _error(
                    401, "woocommerce_rest_authentication_error", "Invalid nonce - nonce has already been used."
                )
            self._nonces[params["oauth_nonce"]] = float(stamp)
        return "shop_manager", None

    # --- products ---

    @staticmethod
    def _fields(data: dict[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
        wanted = [f.strip() for f in params.get("_fields", "").split(",") if f.strip()]
        if not wanted:
            return data
        return {k: v for k, v in data.items() if k in wanted or k == "id"}

    def _page(
        self,
        rows: Sequence[Any],
        params: Mapping[str, str],
        path: str,
        as_json: Callable[[Any], dict[str, Any]] | None = None,
    ) -> _Reply:
        try:
            per_page = int(params.get("per_page", "10"))
            page = int(params.get("page", "1"))
        except ValueError:
            return _error(400, "rest_invalid_param", "Invalid parameter(s): per_page, page")
        if not 1 <= per_page <= 100:
            return _error(
                400,
                "rest_invalid_param",
                "Invalid parameter(s): per_page",
                params={"per_page": "per_page must be between 1 (inclusive) and 100 (inclusive)"},
            )
        if page < 1:
            return _error(
                400,
                "rest_invalid_param",
                "Invalid parameter(s): page",
                params={"page": "page must be greater than or equal to 1"},
            )
        total = len(rows)
        pages = math.ceil(total / per_page) if total else 0
        shown = rows[(page - 1) * per_page : page * per_page]
        chunk = [self._fields(as_json(r) if as_json else r, params) for r in shown]
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        links = []
        base = {
            k: v
            for k, v in params.items()
            if not k.startswith("oauth_") and k not in ("consumer_key", "consumer_secret")
        }
        if page > 1:
            links.append(f'<{self.url}{path}?{urlencode({**base, "page": page - 1})}>; rel="prev"')
        if page < pages:
            links.append(f'<{self.url}{path}?{urlencode({**base, "page": page + 1})}>; rel="next"')
        if links:
            headers["Link"] = ", ".join(links)
        return _Reply(200, chunk, headers)

    @staticmethod
    def _id_list(value: str) -> list[int] | None:
        try:
            return [int(v) for v in re.split(r"[,\s]+", value.strip()) if v]
        except ValueError:
            return None

    def _list_products(self, params: Mapping[str, str], parent_id: int | None) -> _Reply:
        if parent_id is None:
            rows = [p for p in self.products.values() if p.type != "variation"]
        else:
            rows = [self.products[i] for i in self._children.get(parent_id, []) if i in self.products]
        if "include" in params:
            include = self._id_list(params["include"])
            if include is None:
                return _error(400, "rest_invalid_param", "Invalid parameter(s): include")
            rows = [p for p in rows if p.id in include]
        if params.get("sku"):
            skus = {s.strip() for s in params["sku"].split(",")}
            rows = [p for p in rows if p.sku in skus]
        if params.get("type"):
            rows = [p for p in rows if p.type == params["type"]]
        orderby, descending = params.get("orderby", "date"), params.get("order", "desc") != "asc"
        if orderby not in ("date", "id", "include", "title", "slug", "modified", "menu_order", "price", "popularity"):
            return _error(400, "rest_invalid_param", "Invalid parameter(s): orderby")
        if orderby == "id":
            rows.sort(key=lambda p: p.id, reverse=descending)
        elif orderby == "modified":
            rows.sort(key=lambda p: (p.modified, p.id), reverse=descending)
        else:
            rows.sort(key=lambda p: (p.created, p.id), reverse=descending)
        path = API_PREFIX + ("products" if parent_id is None else f"products/{parent_id}/variations")
        return self._page(rows, params, path, self._product_json)

    def _batch(self, body: bytes, parent_id: int | None) -> _Reply:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "rest_invalid_json", "Invalid JSON body passed.")
        if not isinstance(payload, dict):
            payload = {}
        items = {k: payload.get(k) or [] for k in ("create", "update", "delete")}
        if sum(len(v) for v in items.values() if isinstance(v, list)) > self.batch_limit:
            return _error(
                413,
                "woocommerce_rest_request_entity_too_large",
                f"Unable to accept more than {self.batch_limit} items for this request.",
            )
        if parent_id is not None:
            parent = self.products.get(parent_id)
            if parent is None or parent.type == "variation":
                # The route exists for any number; every item then fails on its own.
                parent_id = -1
        answer: dict[str, list[Any]] = {}
        for item in items["update"] if isinstance(items["update"], list) else []:
            answer.setdefault("update", []).append(self._update_item(item, parent_id))
        for kind in ("create", "delete"):
            for item in items[kind] if isinstance(items[kind], list) else []:
                item_id = item.get("id", 0) if isinstance(item, dict) else item
                answer.setdefault(kind, []).append(
                    {
                        "id": item_id,
                        "error": {
                            "code": "fake_not_implemented",
                            "message": f"The fake store does not {kind}.",
                            "data": {"status": 501},
                        },
                    }
                )
        return _Reply(200, answer if answer else [])

    def _update_item(self, item: Any, parent_id: int | None) -> dict[str, Any]:
        item_id = item.get("id") if isinstance(item, dict) else None

        def error(code: str, message: str, **data: Any) -> dict[str, Any]:
            return {"id": item_id, "error": {"code": code, "message": message, "data": {"status": 400, **data}}}

        try:
            product = self.products.get(int(item_id))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            product = None
        if parent_id is None:
            if product is None or product.type == "variation":
                return error("woocommerce_rest_product_invalid_id", "Invalid ID.")
        elif product is None or product.type != "variation" or product.parent_id != parent_id:
            return error("woocommerce_rest_product_variation_invalid_id", "Invalid ID.")
        assert isinstance(item, dict)
        manage = item.get("manage_stock")
        if (
            manage is not None
            and not isinstance(manage, bool)
            and not (product.type == "variation" and manage == "parent")
        ):
            return error(
                "rest_invalid_param",
                "Invalid parameter(s): manage_stock",
                params={"manage_stock": "manage_stock is not of type boolean."},
            )
        quantity = item.get("stock_quantity")
        if "stock_quantity" in item and (isinstance(quantity, bool) or not isinstance(quantity, int)):
            return error(
                "rest_invalid_param",
                "Invalid parameter(s): stock_quantity",
                params={"stock_quantity": "stock_quantity is not of type integer."},
            )
        if manage is True:
            if product.type == "external":
                return error("product_external_invalid_manage_stock", "External products cannot be stock managed.")
            if product.refusal is not None:
                return error(*product.refusal)
        if manage is not None:
            product.manage_stock = manage
        if "stock_quantity" in item and product.manage_stock is True:
            product.stock_quantity = quantity
        product.modified = now_s()
        return self._product_json(product)

    # --- orders ---

    def _parse_date(self, value: str, gmt: bool) -> datetime | None:
        """A query date as WordPress compares it: against the GMT column, or the site's local one."""
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if gmt:
            return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
        # Compared with the local column as written: the zone is not looked at.
        return moment.replace(tzinfo=UTC) - self.offset

    def _list_orders(self, params: Mapping[str, str]) -> _Reply:
        gmt = params.get("dates_are_gmt", "").lower() in ("1", "true", "yes")
        statuses = [s.strip() for s in params.get("status", "any").split(",") if s.strip()] or ["any"]
        for status in statuses:
            if status not in (*ORDER_STATUSES, "any", "trash"):
                return _error(
                    400,
                    "rest_invalid_param",
                    "Invalid parameter(s): status",
                    params={"status": f"status[0] is not one of {', '.join(('any', *ORDER_STATUSES, 'trash'))}."},
                )
        if "any" in statuses:  # WC_REST_Orders_Controller: "any" ends the list, whatever came before or after
            statuses = ["any"]
        rows = []
        for order in self.orders.values():
            status = "trash" if order.trashed else order.status
            if "any" in statuses:
                if status == "trash":
                    continue
            elif status not in statuses:
                continue
            rows.append(order)
        for name, attribute, later in (
            ("modified_after", "modified", True),
            ("modified_before", "modified", False),
            ("after", "created", True),
            ("before", "created", False),
        ):
            if name in params:
                bound = self._parse_date(params[name], gmt)
                if bound is None:
                    return _error(
                        400, "rest_invalid_param", f"Invalid parameter(s): {name}", params={name: "Invalid date."}
                    )
                rows = [o for o in rows if (getattr(o, attribute) > bound if later else getattr(o, attribute) < bound)]
        if "include" in params:
            include = self._id_list(params["include"]) or []
            rows = [o for o in rows if o.id in include]
        orderby = params.get("orderby", "date")
        keys = {"date": lambda o: (o.created, o.id), "modified": lambda o: (o.modified, o.id), "id": lambda o: o.id}
        if orderby not in (*keys, "include", "title", "slug"):
            return _error(400, "rest_invalid_param", "Invalid parameter(s): orderby")
        rows.sort(key=keys.get(orderby, keys["date"]), reverse=params.get("order", "desc") != "asc")
        return self._page([self._order_json(o) for o in rows], params, API_PREFIX + "orders")

    # --- webhooks ---

    def _webhook_json(self, hook: FakeWebhook) -> dict[str, Any]:
        """As ``WC_REST_Webhooks_V2_Controller`` answers: never the secret."""
        resource, _, event = hook.topic.partition(".")
        return {
            "id": hook.id,
            "name": hook.name,
            "status": hook.status,
            "topic": hook.topic,
            "resource": resource,
            "event": event,
            "hooks": ORDER_TOPIC_HOOKS.get(hook.topic, [f"woocommerce_{hook.topic.replace('.', '_')}"]),
            "delivery_url": hook.delivery_url,
            **self._dates("date_created", hook.created),
            **self._dates("date_modified", hook.modified),
        }

    def _list_webhooks(self, params: Mapping[str, str]) -> _Reply:
        status = params.get("status", "all")
        if status not in ("all", *WEBHOOK_STATUSES):
            return _error(
                400,
                "rest_invalid_param",
                "Invalid parameter(s): status",
                params={"status": f"status is not one of all, {', '.join(WEBHOOK_STATUSES)}."},
            )
        rows = [h for h in self.webhooks.values() if status == "all" or h.status == status]
        rows.sort(key=lambda h: (h.created, h.id), reverse=params.get("order", "desc") != "asc")
        return self._page(rows, params, API_PREFIX + "webhooks", self._webhook_json)

    @staticmethod
    def _valid_topic(topic: str) -> bool:
        resource, _, event = topic.lower().partition(".")
        return (resource in WEBHOOK_RESOURCES and event in WEBHOOK_EVENTS) or (resource == "action" and bool(event))

    @staticmethod
    def _valid_url(url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.netloc)

    def _create_webhook(self, body: bytes) -> _Reply:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "rest_invalid_json", "Invalid JSON body passed.")
        if not isinstance(payload, dict):
            payload = {}
        for name in ("topic", "delivery_url"):
            if not payload.get(name):
                return _error(400, "rest_missing_callback_param", f"Missing parameter(s): {name}", params=[name])
        topic, url = str(payload["topic"]), str(payload["delivery_url"])
        if not self._valid_topic(topic):
            return _error(
                400, "woocommerce_rest_shop_webhook_invalid_topic", "Webhook topic is required and must be valid."
            )
        if not self._valid_url(url):
            return _error(
                400,
                "woocommerce_rest_shop_webhook_invalid_delivery_url",
                "Webhook delivery URL must be a valid URL starting with http:// or https://.",
            )
        hook_id = self._new_id()
        # A new webhook is saved published, hence active, whatever ``status`` the request carried.
        hook = FakeWebhook(
            id=hook_id,
            name=str(payload.get("name") or f"Webhook created on {now_s():%b %d, %Y @ %I:%M %p}"),
            topic=topic,
            delivery_url=url,
            secret=str(payload.get("secret") or secrets.token_urlsafe(37)),
        )
        self.webhooks[hook_id] = hook
        self._outbox.put(("ping", hook_id, b""))
        return _Reply(201, self._webhook_json(hook), {"Location": f"{self.url}{API_PREFIX}webhooks/{hook_id}"})

    def _update_webhook(self, hook_id: int, body: bytes) -> _Reply:
        hook = self.webhooks.get(hook_id)
        if hook is None:
            return _error(400, "woocommerce_rest_shop_webhook_invalid_id", "ID is invalid.")
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "rest_invalid_json", "Invalid JSON body passed.")
        if not isinstance(payload, dict):
            payload = {}
        if payload.get("topic"):
            if not self._valid_topic(str(payload["topic"])):
                return _error(400, "woocommerce_rest_shop_webhook_invalid_topic", "Webhook topic must be valid.")
            hook.topic = str(payload["topic"])
        if payload.get("delivery_url"):
            if not self._valid_url(str(payload["delivery_url"])):
                return _error(
                    400,
                    "woocommerce_rest_shop_webhook_invalid_delivery_url",
                    "Webhook delivery URL must be a valid URL starting with http:// or https://.",
                )
            hook.delivery_url = str(payload["delivery_url"])
        if payload.get("secret"):
            hook.secret = str(payload["secret"])
        if payload.get("status"):
            if str(payload["status"]).lower() not in WEBHOOK_STATUSES:
                return _error(400, "woocommerce_rest_shop_webhook_invalid_status", "Webhook status must be valid.")
            hook.status = str(payload["status"]).lower()
            if hook.status == "active":
                hook.failures = 0
        if payload.get("name"):
            hook.name = str(payload["name"])
        hook.modified = now_s()
        return _Reply(200, self._webhook_json(hook))

    def _system_status(self) -> dict[str, Any]:
        return {
            "environment": {
                "home_url": self.url,
                "site_url": self.url,
                "wc_version": self.wc_version,
                "wp_version": "6.8",
                "language": "en_US",
            },
            "settings": {"api_enabled": True, "currency": "EUR", "currency_symbol": "&euro;"},
            "active_plugins": [
                {"plugin": "woocommerce/woocommerce.php", "name": "WooCommerce", "version": self.wc_version}
            ],
        }

    # --- control API (the management command, other processes) ---

    def _control(self, method: str, path: str, body: bytes) -> _Reply:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return _Reply(400, {"error": "bad json"})
        try:
            if method == "GET" and path == "/_fake/log":
                return _Reply(
                    200,
                    {"requests": self.requests(), "deliveries": self.deliveries(), "settings": self.channel_settings()},
                )
            if method == "POST" and path == "/_fake/products":
                parent = payload.pop("parent_id", None)
                if parent:
                    return _Reply(201, {"id": self.add_variation(int(parent), **payload)})
                return _Reply(201, {"id": self.add_product(**payload)})
            if method == "GET" and (match := re.fullmatch(r"/_fake/products/(\d+)", path)):
                return _Reply(200, self.product(int(match.group(1))))
            if method == "POST" and path == "/_fake/orders":
                lines = [(str(ref), int(qty)) for ref, qty in payload["lines"]]
                return _Reply(201, {"id": self.create_order(lines, status=payload.get("status", "processing"))})
            if method == "POST" and (match := re.fullmatch(r"/_fake/orders/(\d+)/(edit|refund)", path)):
                order_id, what = int(match.group(1)), match.group(2)
                changes: dict[int | str, int] = {str(ref): int(qty) for ref, qty in payload["lines"]}
                if what == "edit":
                    self.edit_order(order_id, changes)
                else:
                    self.refund_order(order_id, changes, reason=str(payload.get("reason", "")))
                return _Reply(200, self.order(order_id))
            if method == "POST" and path == "/_fake/outage":
                self.outage(bool(payload.get("down", True)))
                return _Reply(200, {"down": self.down})
            if match := re.fullmatch(r"/_fake/orders/(\d+)", path):
                order_id = int(match.group(1))
                if method == "DELETE":
                    self.delete_order(order_id, force=bool(payload.get("force")))
                    return _Reply(200, {"id": order_id})
                if method == "POST":
                    self.set_order_status(order_id, str(payload["status"]))
                return _Reply(200, self.order(order_id))
            if method == "POST" and path == "/_fake/webhook":
                self.set_webhook(str(payload["url"]), payload.get("secret"))
                return _Reply(200, {"url": self.webhook_url})
            if method == "POST" and path == "/_fake/seed":
                prefix = str(payload.pop("prefix", "SKU"))
                counts = {k: int(v) for k, v in payload.items() if k != "variants"}
                seeded = self.seed_catalog(int(payload["variants"]), prefix=prefix, **counts)
                return _Reply(201, {"variants": [vars(v) for v in seeded]})
            if method == "GET" and path == "/_fake/webhooks":
                return _Reply(
                    200,
                    {
                        "webhooks": [
                            {**vars(h), "created": str(h.created), "modified": str(h.modified)}
                            for h in self.subscriptions()
                        ]
                    },
                )
            if method == "POST" and path == "/_fake/fail":
                self.fail_next(
                    int(payload.get("status", 503)),
                    count=int(payload.get("count", 1)),
                    retry_after=payload.get("retry_after"),
                    path_contains=payload.get("path_contains"),
                )
                return _Reply(200, {})
        except (KeyError, TypeError, ValueError) as err:
            return _Reply(400, {"error": f"{type(err).__name__}: {err}"})
        return _Reply(404, {"error": "no such control route"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes: without this, Nagle's algorithm and the client's delayed
            # ACK hold every answer on a keep-alive connection back by 40 ms.
            disable_nagle_algorithm = True

            def version_string(self) -> str:
                return "Apache"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = CaseInsensitiveDict(self.headers.items())
                reply = fake.handle(self.command, self.path, headers, body)
                raw = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                content_type = (
                    "text/html; charset=UTF-8" if reply.raw is not None else "application/json; charset=UTF-8"
                )
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(raw)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

        return Handler
