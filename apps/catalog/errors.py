from __future__ import annotations

from apps.core.errors import Conflict, DomainError, NotFound


class UnknownStockReference(NotFound):
    code = "unknown_reference"


class InvalidMovement(DomainError):
    code = "invalid_movement"


class NegativeStockRefused(Conflict):
    code = "negative_stock"
    default_detail = "This movement would take on_hand below zero at a location that does not allow it."


class InUse(Conflict):
    """A location, item or product that stock, the ledger or listings still refer to."""

    code = "in_use"
    default_detail = "This record is still in use and cannot be deleted."


class ImmutableField(DomainError):
    code = "immutable_field"
    default_detail = "This field cannot be changed once created."
