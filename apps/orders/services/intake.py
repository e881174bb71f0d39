"""Orders from a channel's platform (Shopify, WooCommerce, Amazon): webhooks and polls, applied idempotently.

A platform's order is already sold when Stockroom hears of it, so it takes the import path of
the API (``order_import``: reserve what stock allows, the shortfall becomes an oversell
incident), then follows the platform's status: shipped units are fulfilled (only those shipped
since Stockroom last heard), a cancel releases what the order holds. Each platform order is
applied under the order stream lock of its (channel, platform order id), the same lock as
the API's order events, and applying the same state again changes nothing.

An order that cannot be applied (a SKU the channel does not list, an implausible quantity, a
fulfilment the shelf cannot cover) is never a 500 and never lost: it is kept with its reason as
a ``PlatformOrderRejection`` (admin: "refused platform orders", with a retry), and the rest of
a webhook or poll goes on. Connectors (``apps.channels.connectors``) give plain values and
never touch the database; this module is where their orders meet the stock.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.channels.connectors import connector_named
from apps.channels.connectors.base import Connector, ConnectorError, OrderLine, OrderSource, PlatformOrder
from apps.channels.models import Channel, Listing
from apps.channels.services.config import channel_watermark_set, listings_platform_sold
from apps.channels.services.connection import channel_ref
from apps.core.errors import DomainError
from apps.core.secrets import SecretsUnreadable
from apps.core.throttling import log_refusal_once_a_window
from apps.orders.errors import (
    ImplausibleQuantity,
    WebhookForged,
    WebhookUnreadable,
)
from apps.orders.locks import order_stream_lock, platform_orders_poll_lock
from apps.orders.models import Order, PlatformOrderRejection, PlatformOrderTombstone, WebhookDelivery
from apps.orders.models import OrderLine as StoredLine
from apps.orders.services.allocation import LineRequest
from apps.orders.services.lifecycle import order_cancel, order_confirm, order_fulfil, order_lines_change
from apps.orders.services.places import order_place_move, platform_place_locations, platform_till_sale_book
from apps.orders.services.reserve import implausible_import_record, order_import

log = structlog.get_logger("stockroom.orders")

Status = PlatformOrder.Status
# A line beyond this is no real order whatever the channel's import cap (and beyond a database integer).
MAX_LINE_QUANTITY = 1_000_000
# The longest platform order id an order can carry (``Order.external_id``).
MAX_EXTERNAL_ID = 120


class Result:
    CREATED = "created"  # a new order, imported (and fulfilled as far as the platform shipped it)
    UPDATED = "updated"  # a known order moved on: confirmed, fulfilled further, cancelled
    UNCHANGED = "unchanged"  # the platform showed nothing Stockroom did not know
    PARTIAL = "partial"  # applied but for lines kept for staff (not listed, cut below what shipped)
    TOMBSTONED = "tombstoned"  # cancelled or deleted before Stockroom saw it: kept, so a late create is not imported
    SKIPPED = "skipped"  # nothing to import: no line with a quantity, or cancelled on the platform earlier
    REJECTED = "rejected"  # kept as a PlatformOrderRejection with its reason


@dataclass(frozen=True)
class PlatformOrderApplied:
    external_id: str
    result: str
    order: Order | None = None
    detail: str = ""


# --- one order ----------------------------------------------------------------------------------


def platform_order_apply(
    *, channel: Channel, order: PlatformOrder, actor: str, source: str = ""
) -> PlatformOrderApplied:
    """Bring Stockroom's copy of one platform order to what the platform shows; idempotent.

    New and not cancelled: imported (reserving what stock allows; lines not listed yet are left out
    and kept for staff), then fulfilled as far as the platform shipped it. Known: its lines follow
    the platform's (``order_lines_change``), then confirmed, fulfilled by the units shipped since, or
    cancelled. New and already cancelled: a tombstone is kept, so that a create arriving later is
    not imported unless the platform changed the order after the cancel. Refusals are recorded,
    not raised; every order the platform showed is marked seen (the sweep re-reads the others).
    """
    now = timezone.now()
    with transaction.atomic():
        order_stream_lock(channel_id=channel.pk, external_id=order.external_id)
        steps: _NewOrder | _KnownOrder | None = None
        try:
            if len(order.external_id) > MAX_EXTERNAL_ID:
                raise _Refused(
                    f"The platform's order id is {len(order.external_id)} characters long; Stockroom keeps order "
                    f"ids of up to {MAX_EXTERNAL_ID} characters. Nothing was recorded: check the channel's "
                    "platform or connector."
                )
            existing = Order.objects.filter(channel=channel, external_id=order.external_id).first()
            if existing is not None and _newer(existing.platform_updated_at, order.updated_at):
                Order.objects.filter(pk=existing.pk).update(platform_seen_at=now)
                return PlatformOrderApplied(
                    order.external_id,
                    Result.UNCHANGED,
                    existing,
                    "older than the state already applied (the platform changed the order since): not applied",
                )
            if existing is not None and _before_cancel(channel, existing, order):
                Order.objects.filter(pk=existing.pk).update(platform_seen_at=now)
                return PlatformOrderApplied(
                    order.external_id,
                    Result.UNCHANGED,
                    existing,
                    "not cancelled, from the same second as the platform's cancel already applied: an older state "
                    "(a cancel is final), not applied",
                )
            steps = (
                _NewOrder(channel, order, actor, source)
                if existing is None
                else _KnownOrder(channel, order, actor, existing)
            )
            applied = steps.run()
        except _Refused as refused:
            applied = _refusal_record(channel, order, refused, source)
        else:
            if steps.left_out:
                _left_out_record(channel, order, applied.order, steps.left_out, source)
            else:
                _refusal_resolve(channel, order.external_id)
        if applied.order is not None:
            seen: dict[str, Any] = {"platform_seen_at": now}
            if order.updated_at is not None:
                seen["platform_updated_at"] = order.updated_at  # not older than what it had (checked above)
            Order.objects.filter(pk=applied.order.pk).update(**seen)
    # An order read again without news (the poll's overlap, the sweep) is housekeeping: DEBUG.
    applied_log = log.debug if applied.result == Result.UNCHANGED else log.info
    applied_log(
        "platform_order_applied",
        channel=channel.code,
        external_id=order.external_id,
        status=order.status,
        result=applied.result,
        source=source,
        detail=applied.detail or None,
    )
    return applied


class _Refused(Exception):
    def __init__(self, reason: str, order: Order | None = None, lines: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.order = order
        self.lines = list(lines)


def stored_external_id(external_id: str) -> str:
    """A platform order id as refusals and tombstones store it: whole up to 120 characters, else
    shortened with a hash of the whole (still one row per id; the payload keeps it whole)."""
    if len(external_id) <= MAX_EXTERNAL_ID:
        return external_id
    digest = hashlib.sha256(external_id.encode()).hexdigest()[:16]
    return f"{external_id[:100]}~{digest}"


def _step(what: str, run: Any, *, order: Order | None = None) -> Any:
    """One write of the intake in its own savepoint: a refusal undoes that write only and says why."""
    try:
        with transaction.atomic():
            return run()
    except DomainError as err:
        if isinstance(err, ImplausibleQuantity):  # its incident went with the savepoint
            implausible_import_record(err)
        raise _Refused(f"{what}: {err.detail}", order) from err


@dataclass
class _NewOrder:
    channel: Channel
    order: PlatformOrder
    actor: str
    source: str
    left_out: list[dict[str, Any]] = field(default_factory=list)

    def run(self) -> PlatformOrderApplied:
        order, external_id = self.order, self.order.external_id
        if order.source == OrderSource.POS:
            return _till_sale(self.channel, order, self.actor)
        if order.status == Status.CANCELLED:
            return _tombstone_keep(self.channel, order, self.source)
        tombstone = PlatformOrderTombstone.objects.filter(
            channel=self.channel, external_id=stored_external_id(external_id)
        ).first()
        if tombstone is not None:
            if not _newer(order.updated_at, tombstone.platform_updated_at):
                return PlatformOrderApplied(
                    external_id,
                    Result.SKIPPED,
                    detail=f"Cancelled on the platform before Stockroom saw it (cancel heard "
                    f"{tombstone.created_at:%Y-%m-%d %H:%M:%S} UTC): not imported, nothing reserved.",
                )
            tombstone.delete()  # the platform changed the order after its cancel: it counts again
        quantities, shipped, unlinked = _lines_resolve(self.channel, order.lines)
        if not quantities:
            if unlinked:
                raise _Refused(_not_listed(self.channel, unlinked), lines=unlinked)
            return PlatformOrderApplied(external_id, Result.SKIPPED, detail="no line with a quantity")
        requests = [LineRequest(sku=sku, quantity=quantity) for sku, quantity in quantities.items()]
        # Reserved where the platform ships it from (its mapped locations); unmapped: the channel's order.
        ships_from = platform_place_locations(self.channel, order.location)
        placed = _step(
            "Import refused",
            lambda: order_import(
                channel=self.channel,
                external_id=external_id,
                lines=requests,
                actor=self.actor,
                location_ids=ships_from,
            ),
        )
        stored = placed.order
        if order.location:
            Order.objects.filter(pk=stored.pk).update(platform_location=order.location[:100])
        sold: dict[int, int] = defaultdict(int)
        for line in placed.lines:
            if line.listing_id is not None:
                sold[line.listing_id] += line.quantity
        listings_platform_sold(units=sold)
        if order.status in (Status.OPEN, Status.FULFILLED, Status.PARTIALLY_FULFILLED):
            _step("Confirm refused", lambda: order_confirm(order_id=stored.pk, actor=self.actor), order=stored)
        _fulfil_shipped(stored, order, shipped, self.actor)
        self.left_out = unlinked
        detail = f"imported without {_named(unlinked)}: kept for staff" if unlinked else ""
        return PlatformOrderApplied(external_id, Result.CREATED, stored, detail)


@dataclass
class _KnownOrder:
    channel: Channel
    order: PlatformOrder
    actor: str
    stored: Order
    left_out: list[dict[str, Any]] = field(default_factory=list)

    def run(self) -> PlatformOrderApplied:
        order, stored, external_id = self.order, self.stored, self.order.external_id
        before = (stored.status, _fulfilled_units(stored), _lines_now(stored), stored.platform_location)
        if (
            order.location
            and order.location != stored.platform_location
            and order.status != Status.CANCELLED
            and stored.is_open
        ):
            # The platform moved it to another location: what it holds moves to where it ships from now.
            ships_from = platform_place_locations(self.channel, order.location)
            if ships_from is None and platform_place_locations(self.channel, stored.platform_location) is None:
                # Neither location is mapped to its own stock (one platform location): nothing moves.
                Order.objects.filter(pk=stored.pk).update(platform_location=order.location[:100])
            else:
                _step(
                    "Move refused",
                    lambda: order_place_move(
                        order_id=stored.pk, place=order.location[:100], location_ids=ships_from, actor=self.actor
                    ),
                    order=stored,
                )
            stored.refresh_from_db()
        if order.status != Status.CANCELLED and stored.is_open and order.lines:
            self._lines_follow()
            stored.refresh_from_db()
        if order.status == Status.CANCELLED:
            if stored.is_open:
                shipped = _shipped_by_sku(self.channel, order.lines)
                if shipped:  # what left before the cancel stays shipped
                    _fulfil_shipped(stored, order, shipped, self.actor)
                    stored.refresh_from_db()
                if stored.is_open:
                    _step("Cancel refused", lambda: order_cancel(order_id=stored.pk, actor=self.actor), order=stored)
        elif order.status in (Status.FULFILLED, Status.PARTIALLY_FULFILLED):
            if stored.status in (Order.Status.CANCELLED, Order.Status.EXPIRED):
                raise _Refused(
                    f"The platform shows this order {order.status.replace('_', ' ')}, but Stockroom has it "
                    f"{stored.status}: nothing was shipped from Stockroom's stock. Check the order on the platform.",
                    stored,
                )
            if stored.status == Order.Status.RESERVED:
                _step("Confirm refused", lambda: order_confirm(order_id=stored.pk, actor=self.actor), order=stored)
            if stored.is_open:
                _fulfil_shipped(stored, order, _shipped_by_sku(self.channel, order.lines), self.actor)
        elif order.status == Status.OPEN and stored.status == Order.Status.RESERVED:
            _step("Confirm refused", lambda: order_confirm(order_id=stored.pk, actor=self.actor), order=stored)
        stored.refresh_from_db()
        changed = (stored.status, _fulfilled_units(stored), _lines_now(stored), stored.platform_location) != before
        result = Result.UPDATED if changed else Result.PARTIAL if self.left_out else Result.UNCHANGED
        detail = f"not applied: {_named(self.left_out)}, kept for staff" if self.left_out else ""
        return PlatformOrderApplied(external_id, result, stored, detail)

    def _lines_follow(self) -> None:
        """The platform's lines now (an edit: more, fewer, removed or new lines) become the order's."""
        try:
            quantities, _shipped, unlinked = _lines_resolve(self.channel, self.order.lines, order=self.stored)
        except _Refused as refused:
            raise _Refused(refused.reason, self.stored) from refused
        requests = [LineRequest(sku=sku, quantity=quantity) for sku, quantity in quantities.items()]
        if unlinked or _lines_now(self.stored) != tuple(sorted(quantities.items())):
            # A line not listed (yet) is left as Stockroom has it, so its units are not released meanwhile.
            changed = _step(
                "Edit refused",
                lambda: order_lines_change(
                    order_id=self.stored.pk, lines=requests, remove_missing=not unlinked, actor=self.actor
                ),
                order=self.stored,
            )
            listings_platform_sold(units=changed.sold)
            if changed.changed:
                log.info("platform_order_lines_changed", channel=self.channel.code, external_id=self.order.external_id)
            self.left_out = unlinked + [
                {"sku": r.sku, "external_id": "", "quantity": r.quantity, "reason": r.reason} for r in changed.refused
            ]
        else:
            self.left_out = []


def _till_sale(channel: Channel, order: PlatformOrder, actor: str) -> PlatformOrderApplied:
    """A sale at the platform's till (Shopify POS): the store's own sale, booked once, never reserved."""
    quantities, _shipped, unlinked = _lines_resolve(channel, order.lines)
    if not quantities:
        if unlinked:
            raise _Refused(_not_listed(channel, unlinked), lines=unlinked)
        return PlatformOrderApplied(order.external_id, Result.SKIPPED, detail="no line with a quantity")
    booked = _step(
        "Till sale refused",
        lambda: platform_till_sale_book(
            channel=channel,
            external_id=order.external_id,
            place=order.location,
            lines=sorted(quantities.items()),
            actor=actor,
        ),
    )
    if not booked.movements:
        return PlatformOrderApplied(order.external_id, Result.UNCHANGED, detail=f"till sale at {booked.location}")
    listings_platform_sold(units=booked.sold)  # the platform lowered its own stock there when it sold
    return PlatformOrderApplied(order.external_id, Result.CREATED, detail=f"till sale at {booked.location}")


def _newer(updated_at: datetime | None, than: datetime | None) -> bool:
    """Whether the platform changed the order after ``than`` (unknown times: not newer, the cancel stands)."""
    return updated_at is not None and than is not None and updated_at > than


def _before_cancel(channel: Channel, existing: Order, order: PlatformOrder) -> bool:
    """A state of an order the platform cancelled, from the very second of that cancel but not cancelled: older.

    Platforms give an order's time to the second, so a webhook held back by the network (or a read overtaken)
    can carry the state just before the cancel with the cancel's own time, and arrive after it. A platform
    cannot undo a cancel, so it is older, like a late create after a tombstone. Applied, it was refused
    ("shipped on the platform, but cancelled here") and kept for staff with nothing to do: the order was right,
    and only a later read of it (the poll's overlap; the sweep reads open orders only) resolved the refusal,
    or none did. While a refusal of the order is kept, its state is applied as before (refused again: that
    refusal may be a true one of this second, a shipment after the cancel). An order cancelled in Stockroom
    while the platform keeps it open is treated alike: the platform's state of the second last applied is
    not refused on a read again; its next change is.
    """
    return (
        existing.status == Order.Status.CANCELLED
        and order.status != Status.CANCELLED
        and order.updated_at is not None
        and order.updated_at == existing.platform_updated_at
        and not PlatformOrderRejection.objects.filter(
            channel=channel, external_id=stored_external_id(order.external_id), resolved_at__isnull=True
        ).exists()
    )


def _tombstone_keep(channel: Channel, order: PlatformOrder, source: str) -> PlatformOrderApplied:
    tombstone, created = PlatformOrderTombstone.objects.get_or_create(
        channel=channel,
        external_id=stored_external_id(order.external_id),
        defaults={"platform_updated_at": order.updated_at, "source": source[:20]},
    )
    if not created and _newer(order.updated_at, tombstone.platform_updated_at):
        tombstone.platform_updated_at = order.updated_at
        tombstone.save(update_fields=["platform_updated_at"])
    return PlatformOrderApplied(
        order.external_id,
        Result.TOMBSTONED,
        detail="Cancelled on the platform before Stockroom saw it: kept, so that a later create of this order "
        "is not imported.",
    )


def platform_order_tombstones_prune(*, older_than: timedelta = timedelta(days=30)) -> int:
    """Forget cancels of unseen orders after a window far beyond any platform's retries and the poll's reach."""
    deleted, _ = PlatformOrderTombstone.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted


def _lines_now(order: Order) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(StoredLine.objects.filter(order=order).values_list("channel_sku", "quantity")))


def _named(lines: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{line['sku'] or line['external_id'] or '(no SKU)'} x{line['quantity']}" for line in lines)


def _not_listed(channel: Channel, unlinked: Sequence[Mapping[str, Any]]) -> str:
    return (
        f"Not listed on channel {channel.code}: {_named(unlinked)}. Add a listing with this channel_sku "
        "(or external_id), then retry the order; nothing was recorded."
    )


def _fulfilled_units(order: Order) -> int:
    return sum(StoredLine.objects.filter(order=order).values_list("fulfilled_quantity", flat=True))


def _lines_resolve(
    channel: Channel, lines: Sequence[OrderLine], *, order: Order | None = None
) -> tuple[dict[str, int], dict[str, int], list[dict[str, Any]]]:
    """Units ordered and shipped per channel SKU, and the lines no listing of the channel names.

    A line names its listing by channel SKU, or else by the platform's id (``Listing.external_id``);
    lines of the same listing add up. A line of a known order whose SKU the order already has
    keeps it (its listing may have been renamed). Refuses implausible quantities (the whole order)."""
    skus = sorted({line.sku for line in lines if line.sku})
    external_ids = sorted({line.external_id for line in lines if line.external_id})
    listed = set(Listing.objects.filter(channel=channel, channel_sku__in=skus).values_list("channel_sku", flat=True))
    by_external = dict(
        Listing.objects.filter(channel=channel, external_id__in=external_ids).values_list("external_id", "channel_sku")
    )
    if order is not None:
        listed |= set(
            StoredLine.objects.filter(order=order, channel_sku__in=skus).values_list("channel_sku", flat=True)
        )
    quantities: dict[str, int] = defaultdict(int)
    shipped: dict[str, int] = defaultdict(int)
    unlinked: dict[tuple[str, str], dict[str, Any]] = {}
    implausible = []
    for line in lines:
        named = line.sku or line.external_id or "(no SKU)"
        if not (0 <= line.quantity <= MAX_LINE_QUANTITY) or not (0 <= line.fulfilled <= MAX_LINE_QUANTITY):
            implausible.append(f"{named[:100]} x{line.quantity} ({line.fulfilled} shipped)")
            continue
        if line.quantity == 0:
            continue  # a line taken off the order
        sku = line.sku if line.sku in listed else by_external.get(line.external_id)
        if sku is None:
            key = (line.sku[:100], line.external_id[:200])
            entry = unlinked.setdefault(
                key,
                {
                    "sku": key[0],
                    "external_id": key[1],
                    "quantity": 0,
                    "reason": f"Not listed on channel {channel.code}: add a listing with this channel_sku (or "
                    "external_id); the line is applied to the order then.",
                },
            )
            entry["quantity"] += line.quantity
            continue
        quantities[sku] += line.quantity
        shipped[sku] += min(line.fulfilled, line.quantity)
    if implausible:
        raise _Refused(f"Implausible quantity on the line(s) {', '.join(implausible)}; nothing was recorded.")
    return dict(quantities), dict(shipped), list(unlinked.values())


def _shipped_by_sku(channel: Channel, lines: Sequence[OrderLine]) -> dict[str, int]:
    try:
        return _lines_resolve(channel, lines)[1]
    except _Refused:
        return {}  # a line Stockroom never had: what it shipped is nothing Stockroom holds


def _fulfil_shipped(stored: Order, order: PlatformOrder, shipped: Mapping[str, int], actor: str) -> None:
    """Fulfil the units the platform shipped since Stockroom last heard (everything, once it says fulfilled)."""
    if order.status not in (Status.FULFILLED, Status.PARTIALLY_FULFILLED, Status.CANCELLED):
        return
    requests = []
    for line in StoredLine.objects.filter(order=stored).order_by("id"):
        target = line.quantity if order.status == Status.FULFILLED else shipped.get(line.channel_sku, 0)
        more = min(target, line.allocated_quantity) - line.fulfilled_quantity
        if more > 0:
            requests.append(LineRequest(sku=line.channel_sku, quantity=more))
    if requests:
        _step(
            "Fulfilment refused",
            lambda: order_fulfil(order_id=stored.pk, lines=requests, actor=actor),
            order=stored,
        )


# --- refusals, kept ------------------------------------------------------------------------------


def platform_order_payload(order: PlatformOrder) -> dict[str, Any]:
    """A platform order as JSON (kept with a refusal, to apply it again later)."""
    data = asdict(order)
    data["updated_at"] = order.updated_at.isoformat() if order.updated_at else None
    return data


def platform_order_from_payload(data: Mapping[str, Any]) -> PlatformOrder:
    updated_at = data.get("updated_at")
    return PlatformOrder(
        external_id=str(data["external_id"]),
        status=str(data["status"]),
        lines=tuple(OrderLine(**line) for line in data.get("lines") or ()),
        updated_at=datetime.fromisoformat(updated_at) if updated_at else None,
        number=str(data.get("number") or ""),
        location=str(data.get("location") or ""),
        source=str(data.get("source") or ""),
    )


def _refusal_record(channel: Channel, order: PlatformOrder, refused: _Refused, source: str) -> PlatformOrderApplied:
    _rejection_keep(channel, order, refused.reason, refused.order, refused.lines, source)
    return PlatformOrderApplied(order.external_id, Result.REJECTED, refused.order, refused.reason)


def _left_out_record(
    channel: Channel, order: PlatformOrder, stored: Order | None, lines: Sequence[dict[str, Any]], source: str
) -> None:
    reason = "Taken in part; left out: " + "; ".join(
        f"{line['sku'] or line['external_id'] or '(no SKU)'} x{line['quantity']}: {line['reason']}" for line in lines
    )
    _rejection_keep(channel, order, reason, stored, lines, source)


def _rejection_keep(
    channel: Channel,
    order: PlatformOrder,
    reason: str,
    stored: Order | None,
    lines: Sequence[dict[str, Any]],
    source: str,
) -> None:
    now = timezone.now()
    rejection, created = PlatformOrderRejection.objects.get_or_create(
        channel=channel,
        external_id=stored_external_id(order.external_id),
        defaults={"reason": reason, "last_seen_at": now, "payload": {}},
    )
    rejection.reason = reason
    rejection.lines = list(lines)
    rejection.number = order.number[:60]
    rejection.platform_status = order.status[:30]
    rejection.payload = platform_order_payload(order)
    rejection.source = source[:20]
    rejection.order = stored or rejection.order
    rejection.last_seen_at = now
    rejection.resolved_at = None
    if not created:
        rejection.seen += 1
    rejection.save()
    log.warning(
        "platform_order_refused",
        channel=channel.code,
        external_id=rejection.external_id,
        reason=reason,
        seen=rejection.seen,
    )


def _refusal_resolve(channel: Channel, external_id: str) -> None:
    PlatformOrderRejection.objects.filter(
        channel=channel, external_id=stored_external_id(external_id), resolved_at__isnull=True
    ).update(resolved_at=timezone.now())


def platform_order_rejections_for_listing(*, listing_id: int) -> list[PlatformOrderApplied]:
    """A listing was created or linked: apply again the refused or partly taken orders of its channel
    with a line left out for want of a listing that it names (by channel SKU or platform id)."""
    listing = Listing.objects.filter(pk=listing_id).only("channel_id", "channel_sku", "external_id").first()
    if listing is None:
        return []
    names = {name for name in (listing.channel_sku, listing.external_id) if name}
    waiting = PlatformOrderRejection.objects.filter(channel_id=listing.channel_id, resolved_at__isnull=True)
    ids = [
        rejection.pk
        for rejection in waiting.only("pk", "lines").order_by("pk")[:500]
        if any(
            line.get("sku") in names or line.get("external_id") in names
            for line in rejection.lines or ()
            if isinstance(line, dict)
        )
    ]
    if not ids:
        return []
    results = platform_order_rejections_retry(rejection_ids=ids, actor="listing linked")
    log.info("platform_orders_applied_for_listing", listing=listing_id, orders=len(results))
    return results


def platform_order_rejections_retry(*, rejection_ids: Iterable[int], actor: str) -> list[PlatformOrderApplied]:
    """Staff asked: apply refused orders again as the platform last showed them (a listing may exist now)."""
    results = []
    open_ones = PlatformOrderRejection.objects.filter(pk__in=sorted(set(rejection_ids)), resolved_at__isnull=True)
    for rejection in open_ones.select_related("channel").order_by("pk"):
        results.append(
            platform_order_apply(
                channel=rejection.channel,
                order=platform_order_from_payload(rejection.payload),
                actor=actor,
                source="retry",
            )
        )
    return results


# --- webhooks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookReceived:
    delivery_id: str
    topic: str
    duplicate: bool
    applied: list[PlatformOrderApplied] = field(default_factory=list)


def platform_webhook_receive(
    *, channel_code: str, connector_name: str, headers: Mapping[str, str], body: bytes
) -> WebhookReceived:
    """Verify a platform's webhook with the channel's connector, then apply its orders once per delivery.

    An unknown channel, a channel on another connector and a signature the connector refuses all
    raise WebhookForged alike (the answer tells no one which channel codes exist); they are logged
    once a minute per endpoint with their count, not once each. A signed body that is not the
    platform's order (malformed JSON, too deep, fields of the wrong type): WebhookUnreadable (400).
    A redelivery (same delivery id) is answered without applying. The delivery is recorded in the
    transaction that applies its orders, so one that fails midway is applied in full when the
    platform retries it.
    """
    channel = Channel.objects.filter(code=channel_code).first()
    if channel is None or channel.connector != connector_name:
        raise _forged(channel, channel_code, connector_name, len(body), "no such channel on this connector")
    try:
        connector = connector_named(connector_name)
        ref = channel_ref(channel)
    except (LookupError, ImportError, SecretsUnreadable) as err:
        log.error("platform_webhook_unusable", channel=channel.code, connector=connector_name, error=str(err))
        raise WebhookForged() from err
    if not connector.receives_orders:
        raise _forged(channel, channel_code, connector_name, len(body), "the connector takes no webhooks")
    try:
        hook = connector.webhook_verify(ref, headers, body)
    except ConnectorError as err:
        log.warning("platform_webhook_unreadable", channel=channel.code, error=str(err))
        raise WebhookUnreadable(str(err) or None) from err
    if hook is None:
        raise _forged(channel, channel_code, connector_name, len(body), "signature refused")
    actor = f"webhook:{connector.name}"
    with transaction.atomic():
        if hook.delivery_id:
            try:
                with transaction.atomic():
                    WebhookDelivery.objects.create(
                        channel=channel,
                        delivery_id=hook.delivery_id[:200],
                        topic=hook.topic[:100],
                        orders=len(hook.orders),
                    )
            except IntegrityError:
                log.info("platform_webhook_repeated", channel=channel.code, delivery_id=hook.delivery_id)
                return WebhookReceived(hook.delivery_id, hook.topic, duplicate=True)
        applied = [
            platform_order_apply(channel=channel, order=order, actor=actor, source="webhook") for order in hook.orders
        ]
    # The platform_order_applied line of each order tells what happened; the delivery itself is housekeeping.
    log.debug(
        "platform_webhook_received",
        channel=channel.code,
        topic=hook.topic,
        delivery_id=hook.delivery_id,
        orders=len(applied),
    )
    return WebhookReceived(hook.delivery_id, hook.topic, duplicate=False, applied=applied)


def _forged(channel: Channel | None, code: str, connector: str, size: int, reason: str) -> WebhookForged:
    # Made-up channel codes share one endpoint, so inventing codes cannot flood the log either.
    endpoint = f"webhooks:{channel.code}:{connector}" if channel is not None else "webhooks:unknown-channel"
    log_refusal_once_a_window(
        log, "platform_webhook_forged", endpoint=endpoint, channel=code[:100], connector=connector[:40],
        reason=reason, size=size,
    )  # fmt: skip
    return WebhookForged()


def webhook_deliveries_prune(*, older_than: timedelta = timedelta(days=14)) -> int:
    """Forget deliveries older than any platform's redelivery window (Shopify retries for 48 hours)."""
    deleted, _ = WebhookDelivery.objects.filter(received_at__lt=timezone.now() - older_than).delete()
    return deleted


# --- polling -------------------------------------------------------------------------------------

# A poll stops after this many pages (and leaves the watermark where it was): the next one carries on.
MAX_PAGES_PER_POLL = 200


@dataclass
class PollReport:
    channel_id: int
    busy: bool = False
    pages: int = 0
    orders: int = 0
    results: dict[str, int] = field(default_factory=dict)
    imported_until: datetime | None = None
    error: str = ""


def _polling_connector(channel: Channel) -> Connector | None:
    try:
        connector = connector_named(channel.connector)
    except (LookupError, ImportError):
        return None
    return connector if connector.polls_orders else None


def platform_order_polls_due() -> list[int]:
    """Active channels whose connector polls orders (the beat fans out one poll per channel)."""
    channels = Channel.objects.filter(is_active=True).exclude(connector="stockroom").order_by("pk")
    return [channel.pk for channel in channels.only("pk", "connector") if _polling_connector(channel) is not None]


def platform_orders_poll(*, channel_id: int) -> PollReport:
    """Fetch the channel's orders changed since its order watermark (minus an overlap) and apply each.

    One poller per channel (``platform_orders_poll_lock``). Pages are followed to the end; then the
    watermark moves to what the connector says is complete (``OrdersPage.complete_until``), which also
    releases raises held while orders were pending. A failed page leaves the watermark where it was:
    the next poll fetches the same orders again, and applying them again changes nothing.
    """
    report = PollReport(channel_id)
    channel = Channel.objects.filter(pk=channel_id, is_active=True).first()
    connector = _polling_connector(channel) if channel is not None else None
    if channel is None or connector is None:
        return report
    try:
        ref = channel_ref(channel)
    except SecretsUnreadable as err:
        report.error = str(err)
        log.error("platform_orders_poll_unusable", channel=channel.code, error=str(err))
        return report
    if not connector.configured(ref):
        return report
    with platform_orders_poll_lock(channel_id=channel.pk) as acquired:
        if not acquired:
            report.busy = True
            return report
        channel.refresh_from_db(fields=["orders_imported_until"])
        overlap = timedelta(seconds=int(settings.STOCKROOM["ORDERS_POLL_OVERLAP_S"]))
        since = channel.orders_imported_until - overlap if channel.orders_imported_until else None
        actor = f"poll:{connector.name}"
        cursor: str | None = None
        complete_until: datetime | None = None
        while True:
            try:
                page = connector.orders_since(ref, since, cursor)
            except ConnectorError as err:
                report.error = ref.redact(str(err) or type(err).__name__)
                log.warning(
                    "platform_orders_poll_failed", channel=channel.code, page=report.pages + 1, error=report.error
                )
                return report
            report.pages += 1
            for order in page.orders:
                applied = platform_order_apply(channel=channel, order=order, actor=actor, source="poll")
                report.orders += 1
                report.results[applied.result] = report.results.get(applied.result, 0) + 1
            complete_until = page.complete_until
            log.debug(
                "platform_orders_page",
                channel=channel.code,
                page=report.pages,
                orders=len(page.orders),
                more=bool(page.next_cursor),
            )
            if not page.next_cursor:
                break
            if report.pages >= MAX_PAGES_PER_POLL:
                log.warning("platform_orders_poll_paused", channel=channel.code, pages=report.pages)
                return report
            cursor = page.next_cursor
        if complete_until is not None:
            channel_watermark_set(channel=channel, orders_imported_until=complete_until)
            report.imported_until = complete_until
    # Housekeeping: each order the poll created or changed has its own platform_order_applied line.
    log.debug(
        "platform_orders_polled",
        channel=channel.code,
        pages=report.pages,
        orders=report.orders,
        since=since.isoformat() if since else None,
        imported_until=complete_until.isoformat() if complete_until else None,
        **report.results,
    )
    return report
