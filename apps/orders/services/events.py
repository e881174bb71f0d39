"""Marketplace order events: numbered, possibly out of order, applied exactly once.

Each event is stored first (unique per channel, external id and sequence, so a resend is a
replay, never a second application), then every parked event of that order is tried in
sequence order until none makes progress. An event waits (parked) while its precondition
is not met, typically a cancel or fulfil that arrived before the create; it is rejected,
with the reason, when it can never apply (a fulfil of a cancelled order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from django.db import transaction
from django.utils import timezone

from apps.channels.models import Channel
from apps.core.errors import DomainError
from apps.orders.errors import EventConflict, ImplausibleQuantity
from apps.orders.locks import order_stream_lock
from apps.orders.models import Order, OrderEvent
from apps.orders.services.allocation import LineRequest
from apps.orders.services.lifecycle import order_cancel, order_confirm, order_fulfil, order_return
from apps.orders.services.reserve import implausible_import_record, order_import, order_reserve

log = structlog.get_logger("stockroom.orders")

TERMINAL = (Order.Status.CANCELLED, Order.Status.EXPIRED, Order.Status.RETURNED)


@dataclass(frozen=True)
class EventReceived:
    event: OrderEvent
    replayed: bool


class _Wait(Exception):
    """The precondition is not met yet: stay parked."""


class _Reject(Exception):
    """The event can never apply."""


def event_apply(
    *, channel: Channel, type: str, external_id: str, sequence: int, payload: dict[str, Any], actor: str = ""
) -> EventReceived:
    """Record one event and apply whatever of this order's events can now apply."""
    with transaction.atomic():
        order_stream_lock(channel_id=channel.pk, external_id=external_id)
        existing = OrderEvent.objects.filter(channel=channel, external_id=external_id, sequence=sequence).first()
        if existing is not None:
            if existing.type != type or existing.payload != payload:
                raise EventConflict(external_id=external_id, sequence=sequence)
            return EventReceived(event=existing, replayed=True)
        event = OrderEvent.objects.create(
            channel=channel, external_id=external_id, sequence=sequence, type=type, payload=payload
        )
        events_drain(channel=channel, external_id=external_id, actor=actor)
    event.refresh_from_db()
    return EventReceived(event=event, replayed=False)


def events_drain(*, channel: Channel, external_id: str, actor: str = "") -> int:
    """Apply parked events of one order until none can; the caller holds the order's stream lock."""
    applied = 0
    progress = True
    while progress:
        progress = False
        parked = list(
            OrderEvent.objects.filter(
                channel=channel, external_id=external_id, status=OrderEvent.Status.PARKED
            ).order_by("sequence")
        )
        for event in parked:
            try:
                with transaction.atomic():
                    order = _event_run(channel, event, actor)
            except _Wait:
                continue
            except (_Reject, DomainError) as err:
                if isinstance(err, ImplausibleQuantity):  # its incident went with the event's savepoint
                    implausible_import_record(err)
                detail = err.detail if isinstance(err, DomainError) else str(err)
                _event_close(event, OrderEvent.Status.REJECTED, detail=detail)
                log.warning("order_event_rejected", event_id=event.pk, type=event.type, detail=detail)
            else:
                _event_close(event, OrderEvent.Status.APPLIED, order=order)
                applied += 1
            progress = True
            break  # the order changed: start again from the lowest parked sequence
    return applied


def _event_close(event: OrderEvent, status: str, *, order: Order | None = None, detail: str = "") -> None:
    event.status = status
    event.detail = detail
    event.applied_at = timezone.now()
    fields = ["status", "detail", "applied_at"]
    if order is not None:
        event.order = order
        fields.append("order")
    event.save(update_fields=fields)


def _lines(payload: dict[str, Any]) -> list[LineRequest] | None:
    lines = payload.get("lines")
    if lines is None:
        return None
    return [LineRequest(sku=str(line["sku"]), quantity=int(line["quantity"])) for line in lines]


def _event_run(channel: Channel, event: OrderEvent, actor: str) -> Order:
    order = Order.objects.filter(channel=channel, external_id=event.external_id).first()
    payload = event.payload
    if event.type == OrderEvent.Type.CREATE:
        if order is not None:
            raise _Reject("The order already exists.")
        lines = _lines(payload) or []
        # Without a mode, a channel that may import imports (the order is sold); any other reserves.
        mode = payload.get("mode") or (Order.Mode.IMPORT if channel.imports_allowed else Order.Mode.RESERVE)
        if mode == Order.Mode.RESERVE:
            placed = order_reserve(
                channel=channel,
                external_id=event.external_id,
                lines=lines,
                hold_minutes=payload.get("hold_minutes"),
                actor=actor,
            )
        else:
            placed = order_import(channel=channel, external_id=event.external_id, lines=lines, actor=actor)
        return placed.order
    if order is None:
        raise _Wait()
    kwargs: dict[str, Any] = {"order_id": order.pk, "actor": actor}
    if event.type == OrderEvent.Type.CONFIRM:
        if order.status in TERMINAL:
            raise _Reject(f"The order is {order.status}.")
        return order_confirm(**kwargs).order
    if event.type == OrderEvent.Type.CANCEL:
        return order_cancel(**kwargs).order
    if event.type == OrderEvent.Type.FULFIL:
        return order_fulfil(lines=_lines(payload), **kwargs).order
    if event.type == OrderEvent.Type.RETURN:
        if order.is_open and order.status != Order.Status.PARTIALLY_FULFILLED:
            raise _Wait()  # a return that overtook its fulfilment
        return order_return(lines=_lines(payload), **kwargs).order
    raise _Reject(f"Unknown event type {event.type!r}.")
