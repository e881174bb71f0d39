"""Orders coming in: reserved at checkout (all lines or none) or imported (already sold, never refused).

Two ways to take the stock, same result:

- the fast path, tried first when the unlocked read says the stock is there: one statement,
  composed and run by the stock owner (``apps.catalog.stock.statement``) with the order's part
  (``fast``), locks every level the order could touch in (item_id, location_id) order, re-checks
  ATP in the locked rows and, only if every planned level still covers its quantity, writes the
  order, lines, reservations, ledger rows, sync work and the caller's idempotent answer. Called
  outside a transaction (the API), that statement is its own transaction: the locks live for it
  alone, with no BEGIN or COMMIT round trip. Inside a caller's transaction it runs in a savepoint;
- the locked path, when the fast statement wrote nothing or the order is an import that stock
  does not cover: ``levels_for_update``, ATP re-read inside the lock, allocation,
  ``movements_apply``, in a transaction (or savepoint) of its own.

Either way ``StockLevel.reserved`` moves together with the reservation rows and the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.catalog.locks import levels_for_update
from apps.catalog.models import Incident, Movement, StockLevel
from apps.catalog.services.incidents import incident_open
from apps.catalog.signals import Tier
from apps.catalog.stock.atp import levels_atp, product_atp_at
from apps.catalog.stock.ledger import MovementSpec, movements_apply
from apps.channels.models import Channel
from apps.core.idempotency import IdempotentAnswer
from apps.orders.errors import ImplausibleQuantity, ImportNotAllowed, InsufficientStock, OrderExists
from apps.orders.models import Order, OrderLine, Reservation
from apps.orders.services.allocation import (
    LineRequest,
    Plan,
    Resolution,
    ResolvedLine,
    lines_resolve,
    pair_totals,
    units_allocate,
)
from apps.orders.services.fast import reserve_execute
from apps.orders.signals import order_reserved

MAX_HOLD_MINUTES = 7 * 24 * 60
# The default plausibility cap of an imported line (docs/architecture.md, "Limits and edges"): the larger of this many
# units and this many times what the line's product has available on the channel's locations.
IMPORT_CAP_FLOOR = 100
IMPORT_CAP_ATP_FACTOR = 10
_TAKEN = object()  # the channel already has an order with this external id


@dataclass(frozen=True)
class OrderPlaced:
    order: Order
    lines: list[OrderLine]
    location_ids: list[int]  # where it holds stock


def order_reserve(
    *,
    channel: Channel,
    external_id: str,
    lines: Sequence[LineRequest],
    hold_minutes: int | None = None,
    actor: str = "",
    answer: IdempotentAnswer | None = None,
) -> OrderPlaced:
    """Reserve every line or nothing; raises InsufficientStock with what each line could get.

    With ``answer``, the caller's idempotent answer is recorded with the order, atomically.
    """
    minutes = settings.STOCKROOM["HOLD_MINUTES_DEFAULT"] if hold_minutes is None else hold_minutes
    expires_at = timezone.now() + timedelta(minutes=max(1, min(minutes, MAX_HOLD_MINUTES)))
    return _order_place(
        channel=channel,
        external_id=external_id,
        requests=lines,
        mode=Order.Mode.RESERVE,
        expires_at=expires_at,
        actor=actor,
        answer=answer,
    )


def order_import(
    *,
    channel: Channel,
    external_id: str,
    lines: Sequence[LineRequest],
    actor: str = "",
    answer: IdempotentAnswer | None = None,
    location_ids: Sequence[int] | None = None,
) -> OrderPlaced:
    """Record a marketplace order that is already sold: reserve what stock allows, the rest is an oversell.

    ``location_ids``: where the platform ships it from (of the channel's locations, in this order); None:
    the channel's locations in their order.

    The shortfall stays on the line (``unallocated_quantity``), the order is flagged and an
    oversell incident opens per item (channels hear of it after commit and push 0).

    Only channels that may import (``Channel.imports_allowed``) get here: others are refused with
    ImportNotAllowed. A line beyond the channel's plausibility cap (``import_caps``) refuses the
    whole order with ImplausibleQuantity and opens an incident; nothing else is written.
    """
    return _order_place(
        channel=channel,
        external_id=external_id,
        requests=lines,
        mode=Order.Mode.IMPORT,
        expires_at=None,
        actor=actor,
        answer=answer,
        location_ids=location_ids,
    )


def _order_place(
    *,
    channel: Channel,
    external_id: str,
    requests: Sequence[LineRequest],
    mode: str,
    expires_at: datetime | None,
    actor: str,
    answer: IdempotentAnswer | None,
    location_ids: Sequence[int] | None = None,
) -> OrderPlaced:
    if mode == Order.Mode.IMPORT and not channel.imports_allowed:
        raise ImportNotAllowed(channel=channel.code)
    resolution = lines_resolve(channel_id=channel.pk, requests=requests)
    if location_ids is not None:  # where the platform ships it from, of the channel's locations
        resolution.location_ids = [loc for loc in location_ids if loc in resolution.location_ids]
    if mode == Order.Mode.IMPORT:
        _check_plausible(channel, external_id, resolution, actor)
    plan = units_allocate(lines=resolution.lines, location_ids=resolution.location_ids, atp=resolution.atp)
    if mode == Order.Mode.RESERVE and not plan.complete:
        # Refusing on a committed snapshot is safe: it never promises stock.
        raise _insufficient(resolution, plan)
    placement = _Placement(channel, external_id, mode, expires_at, actor, resolution, plan, answer)
    alone = not transaction.get_connection().in_atomic_block
    placed: OrderPlaced | object | None = None
    if plan.complete and alone:
        # The statement is its own transaction: no BEGIN or COMMIT, the locks live for it alone.
        placed = _write_fast(placement)
    if placed is None:
        try:
            # A savepoint inside a caller's transaction, so that a refusal leaves it usable.
            with transaction.atomic():
                if plan.complete and not alone:
                    placed = _write_fast(placement)
                if placed is None:  # the fast statement wrote nothing: decide under the locks
                    placed = _write_locked(placement)
        except IntegrityError as err:
            if "order_unique_channel_external_id" not in str(err):
                raise
            placed = _TAKEN
    if placed is _TAKEN:
        raise _order_exists(channel, external_id)
    assert isinstance(placed, OrderPlaced)
    _announce(placed)
    return placed


def line_atp(line: ResolvedLine, location_ids: Sequence[int], atp: dict[tuple[int, int], int]) -> int:
    """Units of the line's product available on these locations (per location, then summed)."""
    if not line.sellable or not line.components:
        return 0
    return sum(product_atp_at(components=line.components, atp=atp, location_id=loc) for loc in location_ids)


def import_caps(channel: Channel, resolution: Resolution) -> list[tuple[int, int]]:
    """Per line: (cap, available now). The channel's ``import_cap_units``, or by default the larger of
    IMPORT_CAP_FLOOR and IMPORT_CAP_ATP_FACTOR x the units available (the resolution's snapshot)."""
    caps = []
    for line in resolution.lines:
        available = line_atp(line, resolution.location_ids, resolution.atp)
        cap = channel.import_cap_units
        if cap is None:
            cap = max(IMPORT_CAP_FLOOR, IMPORT_CAP_ATP_FACTOR * available)
        caps.append((cap, available))
    return caps


def _check_plausible(channel: Channel, external_id: str, resolution: Resolution, actor: str) -> None:
    """Refuse an import with a line beyond its cap: nothing is written but the incident that tells staff."""
    refused = [
        {"sku": line.sku, "requested": line.quantity, "cap": cap, "available": available}
        for line, (cap, available) in zip(resolution.lines, import_caps(channel, resolution), strict=True)
        if line.quantity > cap
    ]
    if not refused:
        return
    skus = ", ".join(f"{r['sku']} x{r['requested']} (cap {r['cap']}, {r['available']} available)" for r in refused)
    first = next(line for line in resolution.lines if line.sku == refused[0]["sku"])
    err = ImplausibleQuantity(
        f"Import refused, nothing was recorded: {skus}. Staff were told; a real order this large needs the "
        "channel's import_cap_units raised.",
        lines=refused,
    )
    err.incident = {
        "kind": Incident.Kind.IMPLAUSIBLE_IMPORT,
        "item_id": first.components[0][0] if first.components else None,
        "reference": f"channel:{channel.code}:{external_id}"[:120],
        "detail": f"Channel {channel.code} ({actor or 'no actor'}) imported order {external_id}: {skus}.",
    }
    implausible_import_record(err)
    raise err


def implausible_import_record(err: ImplausibleQuantity) -> None:
    """Open the incident of a refused import (again, when the caller's savepoint rolled the first back).

    One open incident per channel order: a resend or replay of the same import adds none.
    """
    spec = err.incident
    if spec is None:
        return
    with transaction.atomic():
        if not Incident.objects.filter(
            kind=spec["kind"], reference=spec["reference"], status=Incident.Status.OPEN
        ).exists():
            incident_open(**spec)


@dataclass(frozen=True)
class _Placement:
    """One order being placed: who, what, and how the stock was resolved and planned."""

    channel: Channel
    external_id: str
    mode: str
    expires_at: datetime | None
    actor: str
    resolution: Resolution
    plan: Plan
    answer: IdempotentAnswer | None

    @property
    def status(self) -> str:
        return Order.Status.RESERVED if self.mode == Order.Mode.RESERVE else Order.Status.CONFIRMED

    @property
    def kind(self) -> str:
        return Movement.Kind.RESERVE if self.mode == Order.Mode.RESERVE else Movement.Kind.IMPORT_SALE


def _order_exists(channel: Channel, external_id: str) -> OrderExists:
    existing = Order.objects.filter(channel=channel, external_id=external_id).values_list("pk", flat=True).first()
    return OrderExists(external_id=external_id, id=existing)


def _announce(placed: OrderPlaced) -> None:
    if placed.location_ids:
        transaction.on_commit(
            partial(order_reserved.send, sender=Order, order_id=placed.order.pk, location_ids=placed.location_ids)
        )


def _insufficient(resolution: Resolution, plan: Plan) -> InsufficientStock:
    return InsufficientStock(
        lines=[
            {"sku": line.sku, "requested": line.quantity, "available": line.quantity - plan.shortfall[index]}
            for index, line in enumerate(resolution.lines)
            if plan.shortfall[index]
        ]
    )


def _write_order(p: _Placement, plan: Plan) -> tuple[Order, list[OrderLine]]:
    shortfall = plan.shortfall
    order = Order.objects.create(
        channel=p.channel,
        external_id=p.external_id,
        mode=p.mode,
        status=p.status,
        expires_at=p.expires_at,
        flagged=any(shortfall.values()),
        flag_reason="Oversold: stock did not cover every unit." if any(shortfall.values()) else "",
    )
    lines = OrderLine.objects.bulk_create(
        [
            OrderLine(
                order=order,
                listing_id=line.listing_id,
                channel_sku=line.sku,
                product_id=line.product_id,
                quantity=line.quantity,
                unallocated_quantity=shortfall[index],
            )
            for index, line in enumerate(p.resolution.lines)
        ]
    )
    reservations: list[Reservation] = []
    for allocation in plan.allocations:
        line = p.resolution.lines[allocation.line_index]
        for item, per_unit in line.components:
            reservations.append(
                Reservation(
                    line=lines[allocation.line_index],
                    item_id=item,
                    location_id=allocation.location_id,
                    per_unit=per_unit,
                    quantity=allocation.units * per_unit,
                )
            )
    if reservations:
        Reservation.objects.bulk_create(reservations)
    return order, lines


def _write_fast(p: _Placement) -> OrderPlaced | object | None:
    """The one-statement write (with the idempotent answer, if any); None when a level no longer
    covered its quantity, _TAKEN when the external id is taken (nothing written either way)."""
    resolution, plan = p.resolution, p.plan
    assert resolution.order_id is not None
    pairs = sorted(pair_totals(lines=resolution.lines, allocations=plan.allocations))
    now = timezone.now()
    order = Order(
        pk=resolution.order_id,
        channel=p.channel,
        external_id=p.external_id,
        mode=p.mode,
        status=p.status,
        expires_at=p.expires_at,
        created_at=now,
        updated_at=now,
    )
    order._state.adding = False
    lines = [
        OrderLine(
            order=order,
            listing_id=line.listing_id,
            channel_sku=line.sku,
            product_id=line.product_id,
            quantity=line.quantity,
        )
        for line in resolution.lines
    ]
    placed = OrderPlaced(order=order, lines=lines, location_ids=sorted({loc for _, loc in pairs}))
    written = reserve_execute(
        order_id=order.pk,
        created_at=now,
        channel_id=p.channel.pk,
        external_id=p.external_id,
        mode=p.mode,
        status=p.status,
        expires_at=p.expires_at,
        actor=p.actor,
        kind=p.kind,
        lines=resolution.lines,
        plan=plan,
        pairs=resolution.pairs,
        priority=Tier.SALE,
        claim=p.answer.statement_params(placed) if p.answer is not None else None,
    )
    if not written.written:
        return _TAKEN if written.covered else None  # covered but not written: the external id is taken
    assert written.line_ids is not None
    for row in lines:
        row.pk = written.line_ids[row.channel_sku]
        row._state.adding = False
    return placed


def locked_atp(levels: Sequence[StockLevel]) -> dict[tuple[int, int], int]:
    """ATP of locked levels (``stock.atp``: 0 where the location does not sell)."""
    return levels_atp(levels)


def _write_locked(p: _Placement) -> OrderPlaced:
    resolution = p.resolution
    levels = levels_for_update(resolution.pairs)
    resolution.atp = locked_atp(levels)
    plan = units_allocate(lines=resolution.lines, location_ids=resolution.location_ids, atp=resolution.atp)
    if p.mode == Order.Mode.RESERVE and not plan.complete:
        raise _insufficient(resolution, plan)
    order, lines = _write_order(p, plan)
    totals = pair_totals(lines=resolution.lines, allocations=plan.allocations)
    reference = f"order:{order.pk}"
    movements_apply(
        movements=[
            MovementSpec(item_id=item, location_id=loc, kind=p.kind, reserved_delta=quantity, reference=reference)
            for (item, loc), quantity in totals.items()
        ],
        actor=p.actor,
        priority=Tier.SALE,
        reason=p.kind,
    )
    if not plan.complete:
        _oversell_incidents(order, resolution.lines, plan, resolution.location_ids)
    placed = OrderPlaced(order=order, lines=lines, location_ids=sorted({loc for _, loc in totals}))
    if p.answer is not None:
        p.answer.record(placed)
    return placed


def _oversell_incidents(order: Order, lines: Sequence[ResolvedLine], plan: Plan, location_ids: Sequence[int]) -> None:
    short_by_item: dict[int, int] = {}
    for index, units in plan.shortfall.items():
        if not units:
            continue  # a line stock covered: no incident names its items (an order short on another line)
        for item, per_unit in lines[index].components:
            short_by_item[item] = short_by_item.get(item, 0) + units * per_unit
    for item, shortfall in sorted(short_by_item.items()):
        # The detail names the line(s) short of this item only, not every short line of the order.
        skus = ", ".join(
            f"{lines[i].sku} x{units}"
            for i, units in plan.shortfall.items()
            if units and any(component == item for component, _ in lines[i].components)
        )
        incident_open(
            kind=Incident.Kind.OVERSELL,
            item_id=item,
            location_id=location_ids[0] if location_ids else None,
            shortfall=shortfall,
            reference=f"order:{order.pk}",
            detail=f"Imported order {order.external_id} of channel {order.channel.code} is short: {skus}.",
        )
    if not short_by_item:
        # A line whose product has no components or is not for sale: nothing to count, still an oversell.
        skus = ", ".join(f"{lines[i].sku} x{units}" for i, units in plan.shortfall.items() if units)
        incident_open(
            kind=Incident.Kind.OVERSELL,
            reference=f"order:{order.pk}",
            detail=f"Imported order {order.external_id} of channel {order.channel.code} sells what is not for sale: "
            f"{skus}.",
        )
