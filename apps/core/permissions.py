from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.core.authentication import ChannelPrincipal


class IsStaffToken(BasePermission):
    """A staff user's token. Channels are refused staff endpoints."""

    message = "A staff token is required for this endpoint."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and not isinstance(user, ChannelPrincipal) and user.is_authenticated and user.is_staff)


class IsChannelToken(BasePermission):
    message = "A channel token is required for this endpoint."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, ChannelPrincipal)


def channel_of(request: Request) -> Any:
    """The calling channel; only valid behind IsChannelToken."""
    assert isinstance(request.user, ChannelPrincipal)
    return request.user.channel
