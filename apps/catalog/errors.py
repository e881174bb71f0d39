from __future__ import annotations

from apps.core.errors import Conflict, DomainError, InUse, NotFound

__all__ = [
    "CountFileRejected",
    "CountNeedsConfirmation",
    "ImmutableField",
    "InUse",
    "InvalidAssignment",
    "InvalidMovement",
    "NegativeStockRefused",
    "OverDeliveryUnconfirmed",
    "StockWorkRefused",
    "UnknownStockReference",
]


class UnknownStockReference(NotFound):
    code = "unknown_reference"


class InvalidMovement(DomainError):
    code = "invalid_movement"


class OverDeliveryUnconfirmed(Conflict):
    """More arrived on some receipt lines than is still due, and staff did not confirm those units.

    ``lines`` carries, per line, ``line`` (its id), ``sku``, ``due``, ``arrived`` and ``over``.
    """

    code = "over_delivery_unconfirmed"


class NegativeStockRefused(Conflict):
    code = "negative_stock"
    default_detail = "This movement would take on_hand below zero at a location that does not allow it."


class ImmutableField(DomainError):
    code = "immutable_field"
    default_detail = "This field cannot be changed once created."


class StockWorkRefused(Conflict):
    """A receipt, transfer or adjustment that cannot be booked in its current state."""

    code = "stock_work_refused"


class CountNeedsConfirmation(StockWorkRefused):
    """Applying a count would leave less on hand than is reserved on some lines, and staff did not confirm them."""

    code = "count_needs_confirmation"


class CountFileRejected(InvalidMovement):
    """An uploaded count file with problems: nothing of it was recorded. ``rows`` says what and where."""

    code = "count_file_rejected"


class InvalidAssignment(DomainError):
    """A user assigned to a location where nobody works (a supplier's drop-ship location)."""

    code = "invalid_assignment"
