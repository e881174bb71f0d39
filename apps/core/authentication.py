"""`Authorization: Token <key>` for staff users and channels; only hashes are stored.

A token found in the database is remembered in the process for ``API_TOKEN_CACHE_SECONDS``
(default 2), so a busy channel does not pay a query per request. Saving or deleting a token,
a channel or a user (and ``token_revoke``) forgets everything remembered in that process;
other processes, and a request that read the token just before the change committed, notice
within those seconds. So a revoked token stops working everywhere within them.

Invalid tokens count against the caller's address (``API_TOKEN_FAILURE_LIMIT`` per
``API_TOKEN_FAILURE_WINDOW`` seconds); past the limit, tokens not already remembered answer 429.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.core.models import ApiToken, hash_token
from apps.core.throttling import InvalidTokenThrottle


@dataclass
class ChannelPrincipal:
    """Who is calling when a channel token authenticates: the channel, not a person."""

    channel: Any
    is_authenticated: bool = True
    is_staff: bool = False
    is_active: bool = True

    @property
    def pk(self) -> str:
        return f"channel:{self.channel.pk}"

    def __str__(self) -> str:
        return f"channel {self.channel.code}"


def principal_key_scope(user: Any) -> str:
    """Whose idempotency keys a caller's are: ``channel:<id>`` or ``staff:<user id>`` (keys belong to their owner)."""
    if isinstance(user, ChannelPrincipal):
        return f"channel:{user.channel.pk}"
    return f"staff:{getattr(user, 'pk', '')}"


class _RememberedTokens:
    """Tokens by key hash, each with the moment it was read; cleared whenever an owner changes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, tuple[float, ApiToken]] = {}

    def get(self, key_hash: str) -> ApiToken | None:
        entry = self.entries.get(key_hash)
        if entry is None or time.monotonic() - entry[0] > settings.API_TOKEN_CACHE_SECONDS:
            return None
        return entry[1]

    def put(self, key_hash: str, token: ApiToken, read_at: float) -> None:
        with self.lock:
            if len(self.entries) > 10_000:
                self.entries.clear()
            self.entries[key_hash] = (read_at, token)

    def forget(self, **_: Any) -> None:
        with self.lock:
            self.entries.clear()


remembered_tokens = _RememberedTokens()


def _token_for(key_hash: str, request: Request) -> ApiToken | None:
    token = remembered_tokens.get(key_hash)
    if token is None:
        # Not remembered: a token read for the first time in a while, or a guess. Only here is
        # the caller's count of invalid tokens consulted, so the hot path stays free of Redis.
        failures = InvalidTokenThrottle(request)
        if failures.blocked():
            wait = failures.wait()
            raise exceptions.Throttled(
                wait=wait, detail=f"Too many invalid tokens from this address; retry in {int(wait)} seconds."
            )
        read_at = time.monotonic()
        token = ApiToken.objects.select_related("user", "channel").filter(key_hash=key_hash).first()
        if token is None:
            failures.record_failure()
            return None
        if token.user is not None and token.user.is_staff and not token.user.is_superuser:
            # Read the user's permissions once with the token; the per-request copies share them.
            token.user.get_all_permissions()
        remembered_tokens.put(key_hash, token, read_at)
    return token


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != self.keyword.lower().encode():
            # Another scheme (Bearer, Basic, ...): say which one is expected rather than "not provided".
            scheme = header[0].decode(errors="replace")[:20]
            raise exceptions.AuthenticationFailed(
                f"The Authorization scheme '{scheme}' is not accepted: send 'Authorization: Token <key>'."
            )
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: expected 'Token <key>'.")
        try:
            raw = header[1].decode()
        except UnicodeError as err:
            raise exceptions.AuthenticationFailed("Token contains invalid characters.") from err
        token = _token_for(hash_token(raw), request)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.is_revoked:
            raise exceptions.AuthenticationFailed("Token has been revoked.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
            # Touch at most once a minute so a hot token does not write on every request.
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        if token.channel is not None:
            if not token.channel.is_active:
                raise exceptions.AuthenticationFailed("Channel is inactive.")
            # A copy: what a request does to its channel object stays out of the remembered one.
            return ChannelPrincipal(channel=copy.copy(token.channel)), token
        assert token.user is not None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User is inactive.")
        return copy.copy(token.user), token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Tells the OpenAPI schema how ApiTokenAuthentication works."""

    target_class = "apps.core.authentication.ApiTokenAuthentication"
    name = "TokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`, from `manage.py create_token --staff USERNAME` or `--channel CODE`.",
        }
