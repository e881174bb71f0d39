"""Typed refusals of the orders app; the API's one exception handler turns them into HTTP."""

from __future__ import annotations

from typing import Any

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


class ImportNotAllowed(DomainError):
    """Import mode (an order already sold, never refused) from a channel that may not import."""

    code = "import_not_allowed"
    status_code = 403
    default_detail = (
        "This channel may not send orders in import mode: reserve them instead (mode 'reserve'), "
        "or ask staff to allow imports for the channel (can_import)."
    )


class ImplausibleQuantity(DomainError):
    """An imported line beyond the channel's plausibility cap; ``lines`` names each with its cap.

    Nothing was written; an incident tells staff.
    """

    code = "implausible_quantity"
    status_code = 422
    incident: dict[str, Any] | None = None  # what the refusal's incident records (kind, item, detail)
    default_detail = "An imported line is beyond what this channel can plausibly have sold; nothing was recorded."


class WebhookForged(DomainError):
    """A webhook whose signature the channel's connector does not accept."""

    code = "invalid_signature"
    status_code = 401
    default_detail = "The webhook's signature does not match this channel's webhook secret."


class WebhookUnreadable(DomainError):
    """A correctly signed webhook whose body the connector cannot read."""

    code = "invalid_webhook"
    status_code = 400
    default_detail = "The webhook is signed but its body cannot be read."
