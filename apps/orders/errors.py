"""Typed refusals of the orders app; the API's one exception handler turns them into HTTP."""

from __future__ import annotations

from apps.core.errors import Conflict, DomainError, NotFound


class InsufficientStock(Conflict):
    """Not every line can be reserved; ``lines`` says which and how many could be."""

    code = "insufficient_stock"
    default_detail = "Not enough stock to reserve every line; nothing was reserved."


class UnknownSku(DomainError):
    """A line names a SKU this channel does not list. Shaped like a field error."""

    code = "invalid"
    default_detail = "Invalid input."


class OrderExists(Conflict):
    code = "order_exists"
    default_detail = "This channel already has an order with this external_id."


class OrderNotFound(NotFound):
    default_detail = "No such order."


class InvalidOrderState(Conflict):
    code = "invalid_order_state"


class InvalidQuantity(Conflict):
    code = "invalid_quantity"


class EventConflict(DomainError):
    """The same (external_id, sequence) arrived again with another body."""

    code = "event_conflict"
    status_code = 422
    default_detail = "This event sequence was already received with a different body."
