from __future__ import annotations

from apps.core.errors import DomainError


class InvalidOverride(DomainError):
    """A safety-stock override staff cannot save as given; ``field`` names the culprit."""

    code = "invalid_override"
