from __future__ import annotations

from apps.core.errors import DomainError


class InvalidOverride(DomainError):
    """A safety-stock override staff cannot save as given; ``field`` names the culprit."""

    code = "invalid_override"


class InvalidReorderRule(DomainError):
    """A reorder rule the merchant cannot save as given; ``field`` names the culprit."""

    code = "invalid_reorder_rule"
