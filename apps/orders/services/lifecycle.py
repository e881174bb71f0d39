"""An order after it holds stock: confirm, fulfil (partly or wholly), cancel, return, exchange a line.

Every service locks the order row first, then the stock levels it moves (in lock order),
and moves counters only through the ledger writer, so ``reserved`` always equals the sum of
open reservations and the ledger always sums to the levels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial

from django.db import transaction

from apps.catalog.locks import levels_for_update
from apps.catalog.models import Incident, Movement, ProductComponent
from apps.catalog.services.incidents import incident_open
from apps.catalog.signals import Tier, incident_cause_changed
from apps.catalog.stock.ledger import MovementSpec, movements_apply
from apps.orders.errors import InsufficientStock, InvalidOrderState, InvalidQuantity, UnknownSku
from apps.orders.locks import order_for_update
from apps.orders.models import Order, OrderLine, Reservation
from apps.orders.services.allocation import (
    Allocation,
    LineRequest,
    Plan,
    Resolution,
    ResolvedLine,
    lines_resolve,
    pair_totals,
    units_allocate,
)
from apps.orders.services.reserve import locked_atp
from apps.orders.signals import order_reserved


def reservations_grow_or_add(
    *,
    line: OrderLine,
    resolved: ResolvedLine,
    allocations: Iterable[Allocation],
    held: dict[tuple[int, int], Reservation],
    grown: list[Reservation],
    new: list[Reservation],
) -> None:
    """One reservation per (line, item, location): units allocated where the line already holds that component
    grow its row (``grown``), so that a location's reservations of the line stay one per component; elsewhere
    a new row is made (``new``). Nothing is saved here."""
    for allocation in allocations:
        for item, per_unit in resolved.components:
            quantity = allocation.units * per_unit
            existing = held.get((item, allocation.location_id))
            if existing is not None and existing.per_unit == per_unit:
                existing.quantity += quantity
                grown.append(existing)
            else:
                new.append(
                    Reservation(
                        line=line,
                        item_id=item,
                        location_id=allocation.location_id,
                        per_unit=per_unit,
                        quantity=quantity,
                    )
                )


@dataclass(frozen=True)
class OrderState:
    order: Order
    lines: list[OrderLine]


def _state(order: Order) -> OrderState:
    return OrderState(order=order, lines=list(order.lines.all()))


def _reservations_by_line(order: Order) -> dict[int, list[Reservation]]:
    by_line: dict[int, list[Reservation]] = defaultdict(list)
    for reservation in Reservation.objects.filter(line__order=order).order_by("id"):
        by_line[reservation.line_id].append(reservation)
    return by_line


def _groups(reservations: Iterable[Reservation]) -> dict[int, list[Reservation]]:
    """A line's reservations per location, in the order they were allocated (priority order)."""
    groups: dict[int, list[Reservation]] = {}
    for reservation in reservations:
        groups.setdefault(reservation.location_id, []).append(reservation)
    return groups


def _apply(specs: list[MovementSpec], *, actor: str, reason: str) -> None:
    if specs:
        movements_apply(movements=specs, actor=actor, priority=Tier.SALE, reason=reason)


def _requested(lines: Sequence[OrderLine], requests: Sequence[LineRequest] | None) -> dict[int, int] | None:
    """Map requested SKUs to line ids; an SKU not on the order is a 400 like any unknown SKU."""
    if requests is None:
        return None
    by_sku = {line.channel_sku: line for line in lines}
    unknown = [r.sku for r in requests if r.sku not in by_sku]
    if unknown:
        raise UnknownSku(
            errors={"lines": [{"sku": ["Not a SKU of this order."]} if r.sku in unknown else {} for r in requests]},
            skus=unknown,
        )
    return {by_sku[r.sku].pk: r.quantity for r in requests}


def _units_plan(
    order_lines: Sequence[OrderLine],
    requested: dict[int, int] | None,
    left: Callable[[OrderLine], int],
    *,
    too_many: str,
    nothing: str,
) -> list[tuple[OrderLine, int]]:
    """Which lines move how many units: all that is left, or what was asked, never more than is left."""
    plan, refused = [], []
    for line in order_lines:
        remaining = left(line)
        want = remaining if requested is None else requested.get(line.pk, 0)
        if want > remaining:
            refused.append({"sku": line.channel_sku, "requested": want, "available": remaining})
        elif want:
            plan.append((line, want))
    if refused:
        raise InvalidQuantity(too_many, lines=refused)
    if not plan:
        raise InvalidQuantity(nothing, lines=[])
    return plan


def _release_open(
    order: Order, *, kind: str, actor: str, reason: str, location_id: int | None = None
) -> dict[int, int]:
    """Release what the order still holds (at one location, when given). Returns units released per line."""
    reservations = [
        r
        for r in Reservation.objects.filter(line__order=order).order_by("id")
        if r.open_quantity and (location_id is None or r.location_id == location_id)
    ]
    if not reservations:
        return {}
    levels_for_update([(r.item_id, r.location_id) for r in reservations])
    specs = []
    units: dict[int, int] = defaultdict(int)
    seen_groups: set[tuple[int, int]] = set()
    for r in reservations:
        quantity = r.open_quantity
        if (r.line_id, r.location_id) not in seen_groups:
            seen_groups.add((r.line_id, r.location_id))
            units[r.line_id] += quantity // r.per_unit
        specs.append(
            MovementSpec(r.item_id, r.location_id, kind, reserved_delta=-quantity, reference=f"order:{order.pk}")
        )
        r.released += quantity
    Reservation.objects.bulk_update(reservations, ["released"])
    _apply(specs, actor=actor, reason=reason)
    return dict(units)


def _shortfall_settled(order: Order, reason: str) -> None:
    """The order stops counting (cancelled, expired, shipped): units no stock covered are no longer promised.

    That is the cause of its oversell incident gone even when no stock moves, so channels told 0 for it
    hear of it in this transaction. Only flagged orders can have such units: others cost no query.
    """
    if not order.flagged:
        return
    item_ids = sorted(
        set(
            ProductComponent.objects.filter(
                product__order_lines__order=order, product__order_lines__unallocated_quantity__gt=0
            ).values_list("item_id", flat=True)
        )
    )
    if item_ids:
        incident_cause_changed.send(sender=Order, item_ids=item_ids, reason=reason)


@transaction.atomic
def order_confirm(*, order_id: int, channel_id: int | None = None, actor: str = "") -> OrderState:
    """The buyer paid: the hold no longer lapses. Confirming twice is harmless."""
    order = order_for_update(order_id=order_id, channel_id=channel_id)
    if order.status == Order.Status.RESERVED:
        order.status = Order.Status.CONFIRMED
        order.expires_at = None
        order.save(update_fields=["status", "expires_at", "updated_at"])
    elif order.status not in (Order.Status.CONFIRMED, Order.Status.PARTIALLY_FULFILLED, Order.Status.FULFILLED):
        raise InvalidOrderState(f"A {order.status} order cannot be confirmed.", status=order.status)
    return _state(order)


@transaction.atomic
def order_cancel(*, order_id: int, channel_id: int | None = None, actor: str = "") -> OrderState:
    """Release everything the order still holds. Cancelling a cancelled or expired order is harmless."""
    order = order_for_update(order_id=order_id, channel_id=channel_id)
    if order.status in (Order.Status.CANCELLED, Order.Status.EXPIRED):
        return _state(order)
    if not order.is_open:
        raise InvalidOrderState(f"A {order.status} order cannot be cancelled; return it instead.", status=order.status)
    _release_open(order, kind=Movement.Kind.RELEASE, actor=actor, reason="order cancelled")
    order.status = Order.Status.CANCELLED
    order.expires_at = None
    order.save(update_fields=["status", "expires_at", "updated_at"])
    _shortfall_settled(order, "oversold order cancelled")
    return _state(order)


@transaction.atomic
def order_hold_release(*, order_id: int, actor: str = "") -> OrderState:
    """Staff let a reserved order's hold go now, as if it had lapsed."""
    order = order_for_update(order_id=order_id)
    if order.status != Order.Status.RESERVED:
        raise InvalidOrderState(f"A {order.status} order holds no lapsing stock.", status=order.status)
    order_hold_expire(order=order, actor=actor or "staff")
    return _state(order)


def order_hold_expire(*, order: Order, actor: str = "hold expiry") -> None:
    """Let a lapsed hold go (the caller holds the order's row lock)."""
    _release_open(order, kind=Movement.Kind.RELEASE, actor=actor, reason="hold expired")
    order.status = Order.Status.EXPIRED
    order.save(update_fields=["status", "updated_at"])
    _shortfall_settled(order, "oversold order expired")


@transaction.atomic
def order_fulfil(
    *, order_id: int, lines: Sequence[LineRequest] | None = None, channel_id: int | None = None, actor: str = ""
) -> OrderState:
    """Ship units: on_hand and reserved both go down. Without lines, everything still held ships."""
    order = order_for_update(order_id=order_id, channel_id=channel_id)
    if not order.is_open:
        raise InvalidOrderState(f"A {order.status} order cannot be fulfilled.", status=order.status)
    order_lines = list(order.lines.all())
    requested = _requested(order_lines, lines)
    reservations = _reservations_by_line(order)
    plan = _units_plan(
        order_lines,
        requested,
        lambda line: line.allocated_quantity - line.fulfilled_quantity,
        too_many="More units than the order still holds.",
        nothing="Nothing left to fulfil on this order.",
    )
    touched: list[Reservation] = []
    specs: list[MovementSpec] = []
    pending: list[tuple[Reservation, int]] = []
    for line, want in plan:
        units = want
        for group in _groups(reservations[line.pk]).values():
            if units == 0:
                break
            take = min(units, min(r.open_quantity // r.per_unit for r in group))
            if take <= 0:
                continue
            for r in group:
                pending.append((r, take * r.per_unit))
            units -= take
        line.fulfilled_quantity += want - units
    levels = {
        (lv.item_id, lv.location_id): lv for lv in levels_for_update([(r.item_id, r.location_id) for r, _ in pending])
    }
    short = []
    for r, quantity in pending:
        level = levels[(r.item_id, r.location_id)]
        if level.on_hand - quantity < 0 and not level.allow_negative:
            short.append(
                {"item": r.item_id, "location": r.location_id, "on_hand": level.on_hand, "requested": quantity}
            )
        level.on_hand -= quantity
        r.fulfilled += quantity
        touched.append(r)
        specs.append(
            MovementSpec(
                r.item_id,
                r.location_id,
                Movement.Kind.FULFIL,
                on_hand_delta=-quantity,
                reserved_delta=-quantity,
                reference=f"order:{order.pk}",
            )
        )
    if short:
        raise InvalidQuantity("Not on the shelf: a store sale took these units; count the stock first.", short=short)
    Reservation.objects.bulk_update(touched, ["fulfilled"])
    OrderLine.objects.bulk_update([line for line, _ in plan], ["fulfilled_quantity"])
    _apply(specs, actor=actor, reason="order fulfilled")
    done = all(line.fulfilled_quantity >= line.allocated_quantity for line in order_lines)
    order.status = Order.Status.FULFILLED if done else Order.Status.PARTIALLY_FULFILLED
    order.expires_at = None
    order.save(update_fields=["status", "expires_at", "updated_at"])
    if done:
        _shortfall_settled(order, "oversold order fulfilled")
    return OrderState(order=order, lines=order_lines)


@transaction.atomic
def order_return(
    *, order_id: int, lines: Sequence[LineRequest] | None = None, channel_id: int | None = None, actor: str = ""
) -> OrderState:
    """Shipped units come back to the shelf they left. Without lines, everything shipped returns."""
    order = order_for_update(order_id=order_id, channel_id=channel_id)
    if order.status not in (Order.Status.PARTIALLY_FULFILLED, Order.Status.FULFILLED):
        raise InvalidOrderState(f"A {order.status} order has nothing shipped to return.", status=order.status)
    order_lines = list(order.lines.all())
    requested = _requested(order_lines, lines)
    reservations = _reservations_by_line(order)
    plan = _units_plan(
        order_lines,
        requested,
        lambda line: line.fulfilled_quantity - line.returned_quantity,
        too_many="More units than were shipped and not yet returned.",
        nothing="Nothing shipped is left to return.",
    )
    touched: list[Reservation] = []
    specs: list[MovementSpec] = []
    for line, units in plan:
        line.returned_quantity += units
        for group in _groups(reservations[line.pk]).values():
            if units == 0:
                break
            take = min(units, min((r.fulfilled - r.returned) // r.per_unit for r in group))
            if take <= 0:
                continue
            for r in group:
                r.returned += take * r.per_unit
                touched.append(r)
                specs.append(
                    MovementSpec(
                        r.item_id,
                        r.location_id,
                        Movement.Kind.RETURN,
                        on_hand_delta=take * r.per_unit,
                        reference=f"order:{order.pk}",
                    )
                )
            units -= take
    levels_for_update([(s.item_id, s.location_id) for s in specs])
    Reservation.objects.bulk_update(touched, ["returned"])
    OrderLine.objects.bulk_update([line for line, _ in plan], ["returned_quantity"])
    _apply(specs, actor=actor, reason="order returned")
    holds_nothing = all(r.open_quantity == 0 for rs in reservations.values() for r in rs)
    if holds_nothing and all(line.returned_quantity >= line.fulfilled_quantity for line in order_lines):
        order.status = Order.Status.RETURNED
        order.save(update_fields=["status", "updated_at"])
    return OrderState(order=order, lines=order_lines)


@transaction.atomic
def order_line_exchange(
    *, order_id: int, sku: str, new_sku: str, channel_id: int | None = None, actor: str = ""
) -> OrderState:
    """Swap a line's product for another listing of the channel, same quantity; all or nothing."""
    order = order_for_update(order_id=order_id, channel_id=channel_id)
    if order.status not in (Order.Status.RESERVED, Order.Status.CONFIRMED):
        raise InvalidOrderState(f"A {order.status} order's lines cannot be exchanged.", status=order.status)
    order_lines = list(order.lines.all())
    line = next((candidate for candidate in order_lines if candidate.channel_sku == sku), None)
    if line is None:
        raise UnknownSku(errors={"sku": ["Not a SKU of this order."]}, skus=[sku])
    if new_sku != sku and any(candidate.channel_sku == new_sku for candidate in order_lines):
        raise UnknownSku(errors={"new_sku": ["Already a line of this order."]}, skus=[new_sku])
    if line.unallocated_quantity:
        raise InvalidOrderState("An oversold line cannot be exchanged; resolve the oversell first.")
    resolution = lines_resolve(channel_id=order.channel_id, requests=[LineRequest(new_sku, line.quantity)])
    old = [r for r in Reservation.objects.filter(line=line).order_by("id") if r.open_quantity]
    levels = levels_for_update(resolution.pairs + [(r.item_id, r.location_id) for r in old])
    atp = locked_atp(levels)
    for r in old:  # the line's own stock is available to its replacement
        atp[(r.item_id, r.location_id)] = atp.get((r.item_id, r.location_id), 0) + r.open_quantity
    plan = units_allocate(lines=resolution.lines, location_ids=resolution.location_ids, atp=atp)
    if not plan.complete:
        raise InsufficientStock(
            lines=[{"sku": new_sku, "requested": line.quantity, "available": line.quantity - plan.shortfall[0]}]
        )
    reference = f"order:{order.pk}"
    specs = [
        MovementSpec(
            r.item_id, r.location_id, Movement.Kind.RELEASE, reserved_delta=-r.open_quantity, reference=reference
        )
        for r in old
    ]
    for r in old:
        r.released += r.open_quantity
    Reservation.objects.bulk_update(old, ["released"])
    new_line = resolution.lines[0]
    kind = Movement.Kind.RESERVE if order.mode == Order.Mode.RESERVE else Movement.Kind.IMPORT_SALE
    specs += [
        MovementSpec(item, loc, kind, reserved_delta=quantity, reference=reference)
        for (item, loc), quantity in pair_totals(lines=resolution.lines, allocations=plan.allocations).items()
    ]
    Reservation.objects.bulk_create(
        [
            Reservation(
                line=line, item_id=item, location_id=a.location_id, per_unit=per_unit, quantity=a.units * per_unit
            )
            for a in plan.allocations
            for item, per_unit in new_line.components
        ]
    )
    line.channel_sku, line.listing_id, line.product_id = new_sku, new_line.listing_id, new_line.product_id
    line.save(update_fields=["channel_sku", "listing", "product"])
    _apply(specs, actor=actor, reason="order line exchanged")
    return OrderState(order=order, lines=order_lines)


@transaction.atomic
def order_supplier_refused(*, order_id: int, location_id: int, reason: str, actor: str = "supplier check") -> Order:
    """A drop-ship supplier refused: release what the order holds there, flag it, tell staff."""
    order = order_for_update(order_id=order_id)
    released = _release_open(
        order, kind=Movement.Kind.RELEASE, actor=actor, reason="supplier refused", location_id=location_id
    )
    if released:
        lines = list(OrderLine.objects.filter(pk__in=list(released)))
        for line in lines:
            line.unallocated_quantity += released[line.pk]
        OrderLine.objects.bulk_update(lines, ["unallocated_quantity"])
    order.flagged = True
    note = f"Supplier refused: {reason}"
    order.flag_reason = f"{order.flag_reason}\n{note}".strip()
    order.save(update_fields=["flagged", "flag_reason", "updated_at"])
    incident_open(
        kind=Incident.Kind.SUPPLIER_REFUSAL,
        location_id=location_id,
        shortfall=sum(released.values()),
        reference=f"order:{order.pk}",
        detail=f"Order {order.external_id}: {reason}",
    )
    return order


@dataclass(frozen=True)
class LineRefused:
    """A line the change could not apply, left as it was for staff, and why."""

    sku: str
    quantity: int
    reason: str


@dataclass(frozen=True)
class LinesChanged:
    order: Order
    lines: list[OrderLine]
    changed: bool
    refused: list[LineRefused]
    sold: dict[int, int]  # listing id -> units added to the order (the platform sold them)
    short: dict[str, int]  # channel SKU -> units added that no stock covered


@transaction.atomic
def order_lines_change(
    *,
    order_id: int,
    lines: Sequence[LineRequest],
    remove_missing: bool = True,
    channel_id: int | None = None,
    actor: str = "",
) -> LinesChanged:
    """Bring an open order's lines to these quantities (the platform edited the order).

    More units reserve more, as an import does (what stock allows; the shortfall stays on the line
    as unallocated, the order is flagged and an oversell incident opens for each item short); a
    reserve-mode order is refused instead (InsufficientStock). Fewer units give up unallocated
    units first, then release stock (the last allocated location first). A line missing from
    ``lines`` (when ``remove_missing``) or at 0 is taken off the order. Units already shipped are
    never un-shipped: a line cut below its fulfilled units is left as it was and named in ``refused``.
    """
    order = order_for_update(order_id=order_id, channel_id=channel_id)
    if not order.is_open:
        raise InvalidOrderState(f"A {order.status} order's lines cannot be changed.", status=order.status)
    wanted: dict[str, int] = defaultdict(int)
    for request in lines:
        if request.quantity < 0:
            raise InvalidQuantity("A line's quantity cannot be negative.", lines=[{"sku": request.sku}])
        wanted[request.sku] += request.quantity
    order_lines = list(order.lines.all())
    by_sku = {line.channel_sku: line for line in order_lines}
    reservations = _reservations_by_line(order)
    refused: list[LineRefused] = []
    cuts: list[tuple[OrderLine, int]] = []
    grows: list[tuple[OrderLine | None, LineRequest]] = []
    for line in order_lines:
        target = wanted.get(line.channel_sku, 0 if remove_missing else line.quantity)
        if target == line.quantity:
            continue
        if target < line.fulfilled_quantity:
            refused.append(
                LineRefused(
                    line.channel_sku,
                    target,
                    f"The platform shows {target} x {line.channel_sku}, but {line.fulfilled_quantity} already "
                    f"shipped: the line stays at {line.quantity}. Check the order on the platform.",
                )
            )
        elif target < line.quantity:
            cuts.append((line, line.quantity - target))
        else:
            grows.append((line, LineRequest(line.channel_sku, target - line.quantity)))
    grows += [(None, LineRequest(sku, units)) for sku, units in sorted(wanted.items()) if sku not in by_sku and units]
    resolution = lines_resolve(channel_id=order.channel_id, requests=[r for _, r in grows]) if grows else None
    cut_reservations = [r for line, _ in cuts for r in reservations[line.pk] if r.open_quantity]
    levels = levels_for_update(
        (resolution.pairs if resolution else []) + [(r.item_id, r.location_id) for r in cut_reservations]
    )
    atp = locked_atp(levels)
    reference = f"order:{order.pk}"
    specs: list[MovementSpec] = []
    settled_items: set[int] = set()

    # Fewer units: the oversold part shrinks first, then stock is released, last allocated location first.
    touched: list[Reservation] = []
    for line, units in cuts:
        from_shortfall = min(units, line.unallocated_quantity)
        if from_shortfall:
            line.unallocated_quantity -= from_shortfall
            settled_items.update(
                ProductComponent.objects.filter(product_id=line.product_id).values_list("item_id", flat=True)
            )
        left = units - from_shortfall
        for group in reversed(list(_groups(r for r in reservations[line.pk] if r.open_quantity).values())):
            if left == 0:
                break
            take = min(left, min(r.open_quantity // r.per_unit for r in group))
            for r in group:
                r.released += take * r.per_unit
                atp[(r.item_id, r.location_id)] = atp.get((r.item_id, r.location_id), 0) + take * r.per_unit
                touched.append(r)
                specs.append(
                    MovementSpec(
                        r.item_id,
                        r.location_id,
                        Movement.Kind.RELEASE,
                        reserved_delta=-take * r.per_unit,
                        reference=reference,
                    )
                )
            left -= take
        if left:
            raise InvalidOrderState(f"The line {line.channel_sku} holds fewer units than it should; count it first.")
        line.quantity -= units
    if touched:
        Reservation.objects.bulk_update(touched, ["released"])
    removed = [line for line, _ in cuts if line.quantity == 0]
    kept_cuts = [line for line, _ in cuts if line.quantity > 0]
    if kept_cuts:
        OrderLine.objects.bulk_update(kept_cuts, ["quantity", "unallocated_quantity"])
    if removed:  # every unit released: the line goes (its reservations, all released, with it)
        OrderLine.objects.filter(pk__in=[line.pk for line in removed]).delete()

    # More units: allocated like an import, from the channel's locations in priority order.
    sold: dict[int, int] = defaultdict(int)
    short: dict[str, int] = {}
    new_reservations: list[Reservation] = []
    grown: list[Reservation] = []
    if resolution is not None:
        plan = units_allocate(lines=resolution.lines, location_ids=resolution.location_ids, atp=atp)
        if order.mode == Order.Mode.RESERVE and not plan.complete:
            raise InsufficientStock(
                lines=[
                    {"sku": line.sku, "requested": line.quantity, "available": line.quantity - plan.shortfall[index]}
                    for index, line in enumerate(resolution.lines)
                    if plan.shortfall[index]
                ]
            )
        rows: list[OrderLine] = []
        for index, ((known, _request), resolved) in enumerate(zip(grows, resolution.lines, strict=True)):
            if known is None:
                line = OrderLine.objects.create(
                    order=order,
                    listing_id=resolved.listing_id,
                    channel_sku=resolved.sku,
                    product_id=resolved.product_id,
                    quantity=resolved.quantity,
                    unallocated_quantity=plan.shortfall[index],
                )
                order_lines.append(line)
            else:
                line = known
                line.quantity += resolved.quantity
                line.unallocated_quantity += plan.shortfall[index]
                rows.append(line)
            if plan.shortfall[index]:
                short[resolved.sku] = plan.shortfall[index]
            if resolved.listing_id is not None:
                sold[resolved.listing_id] += resolved.quantity
            reservations_grow_or_add(
                line=line,
                resolved=resolved,
                allocations=[a for a in plan.allocations if a.line_index == index],
                held={(r.item_id, r.location_id): r for r in reservations.get(line.pk, ())},
                grown=grown,
                new=new_reservations,
            )
        if rows:
            OrderLine.objects.bulk_update(rows, ["quantity", "unallocated_quantity"])
        if grown:
            Reservation.objects.bulk_update(grown, ["quantity"])
        if new_reservations:
            Reservation.objects.bulk_create(new_reservations)
        kind = Movement.Kind.RESERVE if order.mode == Order.Mode.RESERVE else Movement.Kind.IMPORT_SALE
        specs += [
            MovementSpec(item, loc, kind, reserved_delta=quantity, reference=reference)
            for (item, loc), quantity in pair_totals(lines=resolution.lines, allocations=plan.allocations).items()
        ]
        if short:
            _edit_oversell_incidents(order, resolution, plan)
    _apply(specs, actor=actor, reason="order lines changed")

    order_lines = [line for line in order_lines if line not in removed]
    changed = bool(cuts or grows)
    fields = ["updated_at"]
    if short and not order.flagged:
        order.flagged = True
        order.flag_reason = f"{order.flag_reason}\nOversold: an edit added units no stock covered.".strip()
        fields += ["flagged", "flag_reason"]
    if changed and not order_lines:
        order.status = Order.Status.CANCELLED  # every line was taken off: nothing is left to ship
        order.expires_at = None
        fields += ["status", "expires_at"]
    elif (
        changed
        and all(line.fulfilled_quantity >= line.allocated_quantity for line in order_lines)
        and any(line.fulfilled_quantity for line in order_lines)
    ):
        order.status = Order.Status.FULFILLED  # what is left to ship was cut: the order is complete
        fields += ["status"]
    if changed:
        order.save(update_fields=fields)
        if settled_items:
            incident_cause_changed.send(sender=Order, item_ids=sorted(settled_items), reason="oversold order edited")
        if order.status in (Order.Status.CANCELLED, Order.Status.FULFILLED):
            _shortfall_settled(order, "oversold order edited")
    if new_reservations or grown:
        location_ids = sorted({r.location_id for r in [*new_reservations, *grown]})
        transaction.on_commit(partial(order_reserved.send, sender=Order, order_id=order.pk, location_ids=location_ids))
    return LinesChanged(order=order, lines=order_lines, changed=changed, refused=refused, sold=dict(sold), short=short)


def _edit_oversell_incidents(order: Order, resolution: Resolution, plan: Plan) -> None:
    """One oversell incident per item the added units fell short of, naming the line that is short."""
    for index, units in sorted(plan.shortfall.items()):
        if not units:
            continue
        line = resolution.lines[index]
        detail = (
            f"Order {order.external_id} of channel {order.channel.code} was changed on the platform: "
            f"{line.sku} x{units} more than stock covers."
        )
        if not line.components or not line.sellable:
            incident_open(kind=Incident.Kind.OVERSELL, reference=f"order:{order.pk}", detail=detail)
        for item, per_unit in line.components:
            incident_open(
                kind=Incident.Kind.OVERSELL,
                item_id=item,
                location_id=resolution.location_ids[0] if resolution.location_ids else None,
                shortfall=units * per_unit,
                reference=f"order:{order.pk}",
                detail=detail,
            )
