"""`Authorization: Token <key>` for staff users and channels; only hashes are stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.core.models import ApiToken, hash_token


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


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: expected 'Token <key>'.")
        try:
            raw = header[1].decode()
        except UnicodeError as err:
            raise exceptions.AuthenticationFailed("Token contains invalid characters.") from err
        token = ApiToken.objects.select_related("user", "channel").filter(key_hash=hash_token(raw)).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.is_revoked:
            raise exceptions.AuthenticationFailed("Token has been revoked.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
            # Touch at most once a minute so a hot token does not write on every request.
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        if token.channel is not None:
            if not token.channel.is_active:
                raise exceptions.AuthenticationFailed("Channel is inactive.")
            return ChannelPrincipal(channel=token.channel), token
        assert token.user is not None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User is inactive.")
        return token.user, token

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
