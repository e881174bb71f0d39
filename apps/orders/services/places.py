"""Platform locations in the order path: where a platform order ships from, moving its reservation when the
platform moves it, and a platform's till sales (Shopify POS) booked as the store's own sales.

A channel's ``settings.location_map`` names, for each platform location, the Stockroom locations whose stock it
shows (``apps.channels.connectors.base.location_map``). An order the platform routed to a mapped location is
reserved there; one routed to a location the map does not name takes the channel's locations in their order
(an oversell incident if short, as any import). When the platform moves the order to another location, what it
holds is released where it was and reserved where it ships from now (``order_place_move``). A till sale is a
fact: booked as a ``pos_sale`` movement at the store's location, once (keyed by the platform's order and item),
never reserved (``platform_till_sale_book``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from django.db import transaction

from apps.catalog.errors import NegativeStockRefused
from apps.catalog.locks import levels_for_update
from apps.catalog.models import Incident, Item, Location, Movement, ProductComponent
from apps.catalog.services.incidents import incident_open
from apps.catalog.services.movements import stock_movement_record
from apps.catalog.signals import Tier, incident_cause_changed
from apps.catalog.stock.ledger import MovementSpec, movements_apply
from apps.channels.connectors.base import location_map
from apps.channels.models import Channel, ChannelLocation, Listing
from apps.core.errors import DomainError
from apps.orders.locks import order_for_update
from apps.orders.models import Order, OrderLine, Reservation
from apps.orders.services.allocation import LineRequest, lines_resolve, pair_totals, units_allocate
from apps.orders.services.lifecycle import reservations_grow_or_add
from apps.orders.services.reserve import locked_atp
from apps.orders.signals import order_reserved


def platform_place_locations(channel: Channel, place: str) -> list[int] | None:
    """The channel's Stockroom locations (ids, in the map's order) that platform location ``place`` maps to;
    None when the map does not name it (the order then takes the channel's locations in their order)."""
    if not place:
        return None
    codes = location_map(channel.settings or {}).get(place)
    if not codes:  # unmapped, or mapped to every location the channel sells from
        return None
    found = dict(
        ChannelLocation.objects.filter(channel=channel, location__code__in=codes).values_list(
            "location__code", "location_id"
        )
    )
    return [found[code] for code in codes if code in found]


@dataclass(frozen=True)
class OrderMoved:
    order: Order
    moved_units: int  # product units whose reservation moved
    short: dict[str, int]  # channel SKU -> units the new locations could not cover


@transaction.atomic
def order_place_move(*, order_id: int, place: str, location_ids: Sequence[int] | None, actor: str) -> OrderMoved:
    """The platform now ships this order from ``place``: what it holds elsewhere than ``location_ids`` (and
    what no stock covered) is released and reserved there, as an import reserves (the shortfall stays on its
    line, the order is flagged, an oversell incident per item). None: the channel's locations in their order.
    Idempotent: an order already held where it ships from only records ``place``."""
    order = order_for_update(order_id=order_id)
    order.platform_location = place
    if not order.is_open:
        order.save(update_fields=["platform_location", "updated_at"])
        return OrderMoved(order, 0, {})
    lines = list(OrderLine.objects.filter(order=order).order_by("id"))
    channel_locations = list(
        ChannelLocation.objects.filter(channel_id=order.channel_id)
        .order_by("priority")
        .values_list("location_id", flat=True)
    )
    targets = [loc for loc in (location_ids if location_ids is not None else channel_locations)]
    reservations: dict[int, list[Reservation]] = defaultdict(list)
    for reservation in Reservation.objects.filter(line__order=order).order_by("id"):
        reservations[reservation.line_id].append(reservation)
    leaving: dict[int, list[Reservation]] = {}
    units: dict[int, int] = {}
    for line in lines:
        away = [r for r in reservations[line.pk] if r.open_quantity and r.location_id not in targets]
        by_location: dict[int, list[Reservation]] = defaultdict(list)
        for r in away:
            by_location[r.location_id].append(r)
        moved = sum(min(r.open_quantity // r.per_unit for r in group) for group in by_location.values())
        if moved or line.unallocated_quantity:
            leaving[line.pk] = away
            units[line.pk] = moved + line.unallocated_quantity
    if not units:
        order.save(update_fields=["platform_location", "updated_at"])
        return OrderMoved(order, 0, {})
    moving = [line for line in lines if line.pk in units]
    resolution = lines_resolve(
        channel_id=order.channel_id, requests=[LineRequest(line.channel_sku, units[line.pk]) for line in moving]
    )
    old_pairs = [(r.item_id, r.location_id) for away in leaving.values() for r in away]
    levels = levels_for_update(sorted({*old_pairs, *[(i, loc) for i, loc in resolution.pairs if loc in targets]}))
    atp = locked_atp(levels)
    reference = f"order:{order.pk}"
    specs: list[MovementSpec] = []
    released: list[Reservation] = []
    for away in leaving.values():
        for r in away:
            specs.append(
                MovementSpec(
                    r.item_id,
                    r.location_id,
                    Movement.Kind.RELEASE,
                    reserved_delta=-r.open_quantity,
                    reference=reference,
                )
            )
            r.released += r.open_quantity
            released.append(r)
    plan = units_allocate(lines=resolution.lines, location_ids=targets, atp=atp)
    kind = Movement.Kind.RESERVE if order.mode == Order.Mode.RESERVE else Movement.Kind.IMPORT_SALE
    new: list[Reservation] = []
    grown: list[Reservation] = []
    totals = pair_totals(lines=resolution.lines, allocations=plan.allocations)
    settled: set[int] = set()
    short: dict[str, int] = {}
    for index, (line, resolved) in enumerate(zip(moving, resolution.lines, strict=True)):
        reservations_grow_or_add(
            line=line,
            resolved=resolved,
            allocations=[a for a in plan.allocations if a.line_index == index],
            held={(r.item_id, r.location_id): r for r in reservations[line.pk] if r.location_id in targets},
            grown=grown,
            new=new,
        )
        if plan.shortfall[index] < line.unallocated_quantity:
            settled.update(item for item, _ in resolved.components)
        line.unallocated_quantity = plan.shortfall[index]
        if plan.shortfall[index]:
            short[line.channel_sku] = plan.shortfall[index]
    Reservation.objects.bulk_update(released, ["released"])
    if grown:
        Reservation.objects.bulk_update(grown, ["quantity"])
    if new:
        Reservation.objects.bulk_create(new)
    OrderLine.objects.bulk_update(moving, ["unallocated_quantity"])
    specs += [MovementSpec(item, loc, kind, reserved_delta=q, reference=reference) for (item, loc), q in totals.items()]
    movements_apply(movements=specs, actor=actor, priority=Tier.SALE, reason="order moved")
    fields = ["platform_location", "updated_at"]
    if short:
        if not order.flagged:
            order.flagged = True
            fields.append("flagged")
        order.flag_reason = f"{order.flag_reason}\nShort where it ships from now ({place}).".strip()
        fields.append("flag_reason")
        for index, units_short in sorted(plan.shortfall.items()):
            if not units_short:
                continue
            resolved = resolution.lines[index]
            for item, per_unit in resolved.components:
                incident_open(
                    kind=Incident.Kind.OVERSELL,
                    item_id=item,
                    location_id=targets[0] if targets else None,
                    shortfall=units_short * per_unit,
                    reference=reference,
                    detail=f"Order {order.external_id} of channel {order.channel.code} now ships from {place}: "
                    f"{resolved.sku} x{units_short} more than stock there covers.",
                )
    order.save(update_fields=fields)
    if settled:
        incident_cause_changed.send(sender=Order, item_ids=sorted(settled), reason="order moved")
    if new or grown:
        location_ids_held = sorted({loc for _, loc in totals})
        transaction.on_commit(
            partial(order_reserved.send, sender=Order, order_id=order.pk, location_ids=location_ids_held)
        )
    return OrderMoved(order, sum(a.units for a in plan.allocations), short)


class TillSaleRefused(DomainError):
    status_code = 409
    code = "till_sale_refused"


@dataclass(frozen=True)
class TillSaleBooked:
    location: str  # the Stockroom location code it was booked at
    movements: int  # pos_sale movements written now (0: every one was booked before)
    sold: dict[int, int]  # listing id -> units (the platform lowered its own stock by them)


def platform_till_sale_book(
    *, channel: Channel, external_id: str, place: str, lines: Sequence[tuple[str, int]], actor: str
) -> TillSaleBooked:
    """A till sale the platform made at ``place`` (Shopify POS), booked as ``pos_sale`` movements of each
    line's items at the store that location maps to (its first code; unmapped: the channel's first store), once:
    each movement is keyed by the channel, the platform's order and the item, so a webhook, the poll and a retry
    book it once. A store's conflict rules hold (it may go below zero where it allows it; eating reserved stock
    opens an incident). ``lines``: (channel SKU, units)."""
    codes = location_map(channel.settings or {}).get(place) or []
    location = Location.objects.filter(code=codes[0]).first() if codes else None
    if location is None:
        sells_from = ChannelLocation.objects.filter(channel=channel).order_by("priority").select_related("location")
        fallback = sells_from.filter(location__kind=Location.Kind.STORE).first() or sells_from.first()
        location = fallback.location if fallback is not None else None
    if location is None:
        raise TillSaleRefused(f"No Stockroom location for the till sale at {place or 'an unknown location'}.")
    listings = dict(
        Listing.objects.filter(channel=channel, channel_sku__in=[sku for sku, _ in lines]).values_list(
            "channel_sku", "pk"
        )
    )
    products = dict(Listing.objects.filter(pk__in=list(listings.values())).values_list("pk", "product_id"))
    components: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for product_id, item_id, quantity in ProductComponent.objects.filter(
        product_id__in=list(products.values())
    ).values_list("product_id", "item_id", "quantity"):
        components[product_id].append((item_id, quantity))
    units: dict[int, int] = defaultdict(int)
    sold: dict[int, int] = defaultdict(int)
    for sku, quantity in lines:
        listing = listings.get(sku)
        if listing is None or quantity <= 0:
            continue
        sold[listing] += quantity
        for item, per_unit in components[products[listing]]:
            units[item] += quantity * per_unit
    skus = dict(Item.objects.filter(pk__in=list(units)).values_list("pk", "sku"))
    written = 0
    for item, quantity in sorted(units.items()):
        try:
            result = stock_movement_record(
                location_code=location.code,
                item_sku=skus[item],
                kind=Movement.Kind.POS_SALE,
                quantity=quantity,
                idempotency_key=f"{channel.code}:{external_id}:{item}",
                key_scope=f"till:{channel.connector}",
                actor=actor,
                note=f"Till sale {external_id} on {channel.code} at {place}",
            )
        except NegativeStockRefused as err:
            raise TillSaleRefused(
                f"{skus[item]} x{quantity} at {location.code} would take its stock below zero and the location does "
                "not allow that: count the shelf (or let the store go below zero), then retry."
            ) from err
        written += 0 if result.replayed else 1
    return TillSaleBooked(location.code, written, dict(sold))
