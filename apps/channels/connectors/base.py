"""What the sync engine and the order intake need from a platform, and nothing more.

One connector per platform (``stockroom`` is our own push protocol). The engine (tiers,
coalescing, the watermark rule, dead letters, reconciliation) calls these methods and never
looks at a platform's shapes; a connector never touches the database: it gets plain values
and returns plain values, so a platform's quirks stay in its module.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from rest_framework import serializers

from apps.core.errors import InvalidJson, InvalidText
from apps.core.outbound import OutboundRefused, failure_text
from apps.core.parsers import json_loads_strict
from apps.core.redaction import redact


class ConnectorError(Exception):
    """The platform could not be reached or refused the request as a whole (bad credentials, 5xx, garbage).

    ``retry_after``: the platform's Retry-After (seconds or an HTTP date), passed to the engine's backoff.
    """

    def __init__(self, message: str = "", *, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MalformedOrder(ConnectorError):
    """A platform's order (a signed webhook's body) that is not the platform's shape: not JSON, nested too
    deep, a field of the wrong type or out of range. A webhook answers it 400, never a server error."""


# What reading an order of the wrong shape raises (``for item in 5``, ``int([])``, ``10**400``...).
ORDER_SHAPE_ERRORS = (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, RecursionError)
# The most units one line can hold (the order tables' integer columns).
MAX_LINE_QUANTITY = 2**31 - 1


def order_body_read(body: bytes, what: str) -> Any:
    """A signed webhook's body through the API's strict JSON parser (depth, duplicate keys, NUL).

    MalformedOrder when it is not such JSON."""
    try:
        return json_loads_strict(body)
    except (InvalidJson, InvalidText) as err:
        raise MalformedOrder(f"{what}: {err.detail}") from None


class ConnectorRefused(ConnectorError):
    """The outbound rule refused the request (``apps.core.outbound``): an internal or disallowed address."""

    code = "outbound_refused"

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"outbound request refused: {host}: {reason}")
        self.host = host
        self.reason = reason


def transport_failure(err: requests.RequestException, where: str) -> ConnectorError:
    """The ConnectorError for a request that got no answer: ``where`` and a short reason, never the URL's
    query string nor a credential (ConnectorRefused when the outbound rule refused it)."""
    if isinstance(err, OutboundRefused):
        return ConnectorRefused(err.host, err.reason)
    return ConnectorError(f"{where}: {failure_text(err)}")


class ConnectorThrottled(ConnectorError):
    """The platform refused for its rate limit (a read back, an order poll): nothing was done; wait ``wait_s``."""

    def __init__(self, message: str = "", *, wait_s: float = 1.0) -> None:
        super().__init__(message or f"throttled for {wait_s:.1f} s", retry_after=str(wait_s))
        self.wait_s = wait_s


def url_account(url: object) -> str:
    """A shop's address as an account: scheme-less, lower-case host (and path, for a store in a folder)."""
    parts = urlsplit(str(url or "").strip())
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and port != {"https": 443, "http": 80}.get(parts.scheme.lower()):
        host = f"{host}:{port}"
    return f"{host}{parts.path.rstrip('/').lower()}" if host else ""


def retry_after_seconds(value: str | None, default: float) -> float:
    """A Retry-After header as seconds (it may be seconds or an HTTP date); ``default`` when absent or unreadable."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True)
class ChannelRef:
    """The channel as a connector sees it: its code, validated settings and decrypted credentials."""

    id: int
    code: str
    settings: Mapping[str, Any]
    credentials: Mapping[str, Any]
    push_url: str = ""  # the stockroom connector's endpoint
    secret: str = ""  # the stockroom connector's signing secret

    def secret_values(self) -> list[str]:
        """Every credential value (and the push secret): redacted from any text shown or logged."""
        values = [v for v in self.credentials.values() if isinstance(v, str) and v]
        return [*values, self.secret] if self.secret else values

    def redact(self, text: str) -> str:
        """``text`` (an error about this channel) as it may be shown or stored: no credential, no URL query."""
        return redact(text, self.secret_values())


@dataclass(frozen=True)
class PlaceQuantity:
    """The quantity one platform location shows of a listing (a channel with a ``location_map``)."""

    place: str  # the platform's location id (a key of ``settings.location_map``)
    available: int
    last_pushed: int | None  # what that location was last told (its own compare-and-set value)


@dataclass(frozen=True)
class QuantityUpdate:
    """Tell the platform: this listing now shows ``available``.

    ``places``: on a platform with several locations, what each mapped location shows (``available`` is
    then their sum); empty where the platform keeps one quantity per listing."""

    listing_id: int
    sku: str  # Listing.channel_sku: the merchant's SKU on that channel
    external_id: str  # Listing.external_id: the platform's id of what is sold ("" when unknown)
    available: int
    last_pushed: int | None  # what we last told the platform (compare-and-set where the platform has it)
    places: tuple[PlaceQuantity, ...] = ()


@dataclass
class PushResult:
    """What became of one push of a batch. Every update lands in exactly one of accepted/failed/mismatched,
    unless ``throttled_for`` is set: then the platform took none of them and the batch is simply tried again."""

    accepted: list[int] = field(default_factory=list)  # listing ids
    failed: dict[int, str] = field(default_factory=dict)  # listing id -> why (counted as an attempt)
    # The platform's quantity was not what we last told it (a sale there not imported yet, a hand edit):
    # listing id -> the quantity it shows now (None: unreadable). Never overwritten blindly.
    mismatched: dict[int, int | None] = field(default_factory=dict)
    # With ``places``: what the platform locations that refused show now (listing id -> place -> shown; the
    # listing's other locations took what they were sent).
    mismatched_places: dict[int, dict[str, int | None]] = field(default_factory=dict)
    throttled_for: float | None = None  # seconds to wait; nothing was applied
    pause_for: float | None = None  # the platform's budget says: wait this long before the next request
    requests: int = 0
    retry_after: str | None = None  # Retry-After of a failure, passed to the backoff


@dataclass(frozen=True)
class OrderLine:
    sku: str  # the channel SKU (Listing.channel_sku)
    quantity: int
    fulfilled: int = 0  # units the platform says have shipped
    external_id: str = ""  # the platform's id of what was sold, when the line names no SKU


class OrderSource:
    ONLINE = ""  # an order to ship (reserved where it ships from)
    POS = "pos"  # a sale at a till in a store (Shopify POS): booked as the store's sale, never reserved


@dataclass(frozen=True)
class PlatformOrder:
    """One order as the platform shows it now; applying it again changes nothing."""

    class Status:
        OPEN = "open"  # sold, not shipped (Shopify unfulfilled, Woo processing/on-hold, Amazon Unshipped)
        PENDING = "pending"  # not paid yet (Amazon Pending, Woo pending): reserve, do not fulfil
        FULFILLED = "fulfilled"  # every line shipped
        PARTIALLY_FULFILLED = "partially_fulfilled"
        CANCELLED = "cancelled"

    external_id: str  # the platform's order id, unique per channel
    status: str
    lines: tuple[OrderLine, ...]
    updated_at: datetime | None = None
    number: str = ""  # what the merchant calls it (Shopify "#1001")
    # The platform location it ships from (its open fulfillment orders' location) or, for a till sale, where it
    # was sold; "" when the platform does not say (one location, or not known from this read).
    location: str = ""
    source: str = OrderSource.ONLINE


NUMBER: tuple[type, ...] = (int,)  # JSON integers (booleans refused below)
TEXT_OR_NULL: tuple[type, ...] = (str, type(None))
ID: tuple[type, ...] = (int, str)


def fields_typed(
    payload: Any, fields: Mapping[str, tuple[type, ...]], lines: Mapping[str, tuple[type, ...]], what: str
) -> None:
    """The fields a connector reads from an order body, each of the type the platform sends (when present).

    ``fields`` for the order, ``lines`` for each entry of its ``line_items`` list. MalformedOrder names the first
    field of another type, so ``"line_items": 5`` or ``"quantity": "many"`` is a 400, not a crash or a guess.
    """

    def check(node: Any, expected: Mapping[str, tuple[type, ...]], where: str) -> None:
        if not isinstance(node, dict):
            raise MalformedOrder(f"{what}: {where} is not an object")
        for name, types in expected.items():
            if name in node and (not isinstance(node[name], types) or isinstance(node[name], bool)):
                raise MalformedOrder(f"{what}: {where}{name} is a {type(node[name]).__name__}")

    check(payload, {**fields, "line_items": (list, type(None))}, "")
    for n, line in enumerate(payload.get("line_items") or []):
        check(line, lines, f"line_items[{n}].")


def order_checked(order: PlatformOrder, what: str) -> PlatformOrder:
    """The order a connector read, refused (MalformedOrder) where a field is not of its type or out of range."""
    problems = []
    if not isinstance(order.external_id, str) or not order.external_id:
        problems.append("no order id")
    if not isinstance(order.lines, tuple):
        problems.append("lines are not a list")
    else:
        for n, line in enumerate(order.lines):
            if (
                not isinstance(line, OrderLine)
                or not isinstance(line.sku, str)
                or not isinstance(line.external_id, str)
            ):
                problems.append(f"line {n} is not a line")
            elif not all(isinstance(q, int) and not isinstance(q, bool) for q in (line.quantity, line.fulfilled)):
                problems.append(f"line {n}: a quantity is not a whole number")
            elif not 0 <= line.fulfilled <= line.quantity <= MAX_LINE_QUANTITY:
                problems.append(f"line {n}: quantity {line.quantity} (fulfilled {line.fulfilled}) is out of range")
    if problems:
        raise MalformedOrder(f"{what}: {'; '.join(problems[:5])}")
    return order


@dataclass(frozen=True)
class OrdersPage:
    orders: list[PlatformOrder]
    # Every order changed before this instant has been returned (across all pages): the next poll starts here.
    complete_until: datetime | None
    next_cursor: str | None = None  # more pages of the same poll


@dataclass(frozen=True)
class Webhook:
    """A verified delivery: its id for deduplication and the orders it carries (none for other topics)."""

    delivery_id: str
    topic: str
    orders: list[PlatformOrder]


@dataclass(frozen=True)
class PlatformLocation:
    """A place the platform keeps a quantity for (a Shopify location; one for WooCommerce; Amazon's marketplace)."""

    id: str  # what ``settings.location_id`` (later ``location_map``) holds: a Shopify GID, "default", a marketplace id
    name: str
    active: bool = True


@dataclass(frozen=True)
class CatalogEntry:
    """One sellable variant as the platform lists it, for linking by SKU and for opening stock."""

    sku: str  # the platform's SKU ("" when the variant has none: problem ``no_sku``)
    external_id: str  # exactly what ``Listing.external_id`` must hold to push it
    title: str
    tracked: bool = True  # the platform counts its quantity (Shopify tracked, WooCommerce manage_stock)
    platform_managed: bool = False  # the platform keeps the stock itself (Amazon FBA): never pushed
    # platform location id -> available there now; a location missing here does not stock the variant
    quantities: Mapping[str, int] = field(default_factory=dict)


@dataclass
class Catalog:
    """What ``Connector.catalog`` read, and what it cost (for the bench and the progress line)."""

    entries: list[CatalogEntry] = field(default_factory=list)
    requests: int = 0


@dataclass(frozen=True)
class WebhookSubscription:
    """One order webhook the platform will call: its platform id, topic and address."""

    id: str
    topic: str
    address: str
    active: bool = True


def location_map(settings: Mapping[str, Any]) -> dict[str, list[str]]:
    """A channel's platform locations and the Stockroom location codes each shows (``settings.location_map``).

    ``location_id`` alone is a one-entry map; an empty list of codes means every location the channel sells
    from (what one platform location showed before maps existed)."""
    mapped = settings.get("location_map")
    if isinstance(mapped, Mapping) and mapped:
        return {str(place): [str(code) for code in (codes or [])] for place, codes in mapped.items()}
    single = settings.get("location_id")
    return {str(single): []} if single else {}


# progress(done, total or None): a long read reports how far it is (variants read so far)
Progress = Callable[[int, int | None], None]


class Connector:
    """A platform. Subclasses set ``name``, the two serializers, and implement the methods they support."""

    name: ClassVar[str]
    label: ClassVar[str]
    # Validate ``Channel.settings`` and the write-only credentials; both are JSON objects.
    settings_serializer: ClassVar[type[serializers.Serializer]]
    credentials_serializer: ClassVar[type[serializers.Serializer]]
    receives_orders: ClassVar[bool] = False  # webhooks and/or polling bring orders in
    polls_orders: ClassVar[bool] = False
    max_batch: ClassVar[int] = 100  # most updates in one push request
    orders_get_batch: ClassVar[int] = 50  # most order ids in one ``orders_get`` call
    # The platform's own request budget, used when the channel sets none (``Channel.rate_per_s``/``burst``).
    default_rate_per_s: ClassVar[float] = 5.0
    default_burst: ClassVar[int] = 10
    # Order webhook topics ``webhooks_subscribe`` makes sure of (empty: the platform's orders come by poll only).
    webhook_topics: ClassVar[tuple[str, ...]] = ()
    # Sets one quantity per platform location of ``settings.location_map`` (``QuantityUpdate.places``).
    sets_places: ClassVar[bool] = False
    # The settings that decide where the credentials are sent: changing one needs the credentials again.
    credential_destinations: ClassVar[tuple[str, ...]] = ()

    def configured(self, channel: ChannelRef) -> bool:
        """Whether the channel has what pushing needs: by default, settings and credentials that validate."""
        settings_ok = self.settings_serializer(data=dict(channel.settings)).is_valid()
        return settings_ok and self.credentials_serializer(data=dict(channel.credentials)).is_valid()

    def push(self, channel: ChannelRef, updates: Sequence[QuantityUpdate]) -> PushResult:
        """Tell the platform these quantities (at most ``max_batch``). Raising ConnectorError fails them all."""
        raise NotImplementedError

    def read_back(self, channel: ChannelRef, listings: Sequence[QuantityUpdate]) -> dict[int, int | None]:
        """What the platform shows now for these listings: listing id -> quantity (None: not there).

        ``available``/``last_pushed`` of the given updates are ignored. Raises ConnectorError
        (ConnectorThrottled when the platform's rate limit refused the read).
        """
        raise NotImplementedError

    def orders_since(self, channel: ChannelRef, since: datetime | None, cursor: str | None = None) -> OrdersPage:
        """Orders created or changed since ``since`` (a backfill or the only intake). Raises ConnectorError."""
        raise NotImplementedError

    def orders_get(self, channel: ChannelRef, external_ids: Sequence[str]) -> list[PlatformOrder]:
        """These orders as the platform shows them now (the order truth sweep re-reads open orders).

        An order the platform no longer has (deleted) comes back CANCELLED with no lines; one it
        cannot tell about is left out. At most ``orders_get_batch`` ids per call. Raises ConnectorError.
        """
        raise NotImplementedError

    def webhook_verify(self, channel: ChannelRef, headers: Mapping[str, str], body: bytes) -> Webhook | None:
        """The delivery if its signature is right, else None (the view answers 401). Raises ConnectorError
        when the body is signed but unreadable."""
        return None

    def test_connection(self, channel: ChannelRef) -> str:
        """A line for the merchant ("Connected to shop X, location Y"); raises ConnectorError with the reason."""
        raise NotImplementedError

    def account(self, settings: Mapping[str, Any]) -> str:
        """The platform account whose orders this channel imports (a shop, a store, a seller in a marketplace),
        from validated settings, in one spelling: two channels on one account would import every order twice,
        so Stockroom refuses the second. "" where the connector imports no orders."""
        return ""

    # Going live on an existing shop (discover, link, opening stock, subscribe). Each reads only, except
    # ``webhooks_subscribe``; each raises ConnectorError (ConnectorThrottled) like the methods above.

    def locations(self, channel: ChannelRef) -> list[PlatformLocation]:
        """The platform's stock locations, as ``PlatformLocation`` (id, name, active)."""
        raise NotImplementedError

    def catalog(self, channel: ChannelRef, progress: Progress | None = None) -> Catalog:
        """Every variant the platform sells for this channel, with its quantity at each platform location.

        Large catalogs go through the platform's bulk path (Shopify bulk operations, Amazon reports)
        within its limits; ``progress`` is called as pages or lines arrive.
        """
        raise NotImplementedError

    def webhook_subscriptions(self, channel: ChannelRef) -> list[WebhookSubscription]:
        """The order webhooks the platform has for this app or key now (all topics in ``webhook_topics``)."""
        return []

    def webhooks_subscribe(self, channel: ChannelRef, address: str) -> list[WebhookSubscription]:
        """Make sure each of ``webhook_topics`` calls ``address``: existing subscriptions to it are reused,
        missing ones created. Returns the subscriptions for ``address`` after the call."""
        return []
