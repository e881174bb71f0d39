from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle


class TokenRateThrottle(SimpleRateThrottle):
    """Requests per token (Redis-backed); anonymous calls are throttled per address."""

    scope = "token"

    def get_cache_key(self, request: Request, view: Any) -> str:
        token = getattr(request, "auth", None)
        ident = f"token:{token.pk}" if token is not None else f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
