"""Who may call what.

Staff tokens carry their user's Django permissions, as in the admin: on the model of the
endpoint, GET/HEAD/OPTIONS need ``view_<model>``, POST ``add_<model>``, PUT/PATCH
``change_<model>`` and DELETE ``delete_<model>``. A POST to an action on one object
(``/channels/{code}/sync/``, ``/channels/{code}/watermark/``) changes that object, so it needs
``change_<model>``; a GET action (``/feed-runs/{id}/quarantine/``) needs ``view_<model>``.
Recording a stock movement is ``catalog.add_movement``; reading stock levels is
``catalog.view_stocklevel``. A view may name its own with ``required_permissions``, a dict of
method to permission names. Superusers may do everything; channel tokens are unaffected.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Model
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.core.authentication import ChannelPrincipal

_ACTION_BY_METHOD = {
    "GET": "view",
    "HEAD": "view",
    "OPTIONS": "view",
    "POST": "add",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}


def _endpoint_model(view: Any) -> type[Model] | None:
    queryset = getattr(view, "queryset", None)
    if queryset is None and hasattr(view, "get_queryset"):
        try:
            queryset = view.get_queryset()
        except (AssertionError, AttributeError, NotImplementedError):
            return None
    return getattr(queryset, "model", None)


def required_permissions(request: Request, view: Any) -> list[str] | None:
    """The permissions this request needs, or None where the endpoint names no model."""
    method = request.method or "GET"
    declared = getattr(view, "required_permissions", None)
    if declared is not None:
        return list(declared.get(method, declared.get("*", [])))
    model = _endpoint_model(view)
    if model is None:
        return None
    action = _ACTION_BY_METHOD.get(method)
    if action is None:
        return None
    if action == "add" and getattr(view, "detail", False):
        action = "change"  # an action on an existing object, e.g. POST /channels/{code}/sync/
    return [f"{model._meta.app_label}.{action}_{model._meta.model_name}"]


def _is_staff_user(user: Any) -> bool:
    return bool(user and not isinstance(user, ChannelPrincipal) and user.is_authenticated and user.is_staff)


class IsStaffToken(BasePermission):
    """A staff user's token, holding the Django permission the endpoint needs. Channels are refused."""

    message = "A staff token is required for this endpoint."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not _is_staff_user(user):
            return False
        if user.is_superuser:
            return True
        needed = required_permissions(request, view)
        if needed is None:
            # No model to judge by: only superusers, so a new endpoint is never open by accident.
            self.message = "This endpoint needs a superuser."
            return False
        if not user.has_perms(needed):
            self.message = f"Your user lacks the permission {', '.join(needed)}."
            return False
        return True


class ApiDocsAccess(BasePermission):
    """The OpenAPI schema and docs: anyone while API_DOCS_PUBLIC is on, else staff only."""

    message = "The API docs need a staff login or a staff token (API_DOCS_PUBLIC is off)."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(settings.API_DOCS_PUBLIC) or _is_staff_user(request.user)


class IsChannelToken(BasePermission):
    message = "A channel token is required for this endpoint."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, ChannelPrincipal)


def channel_of(request: Request) -> Any:
    """The calling channel; only valid behind IsChannelToken."""
    assert isinstance(request.user, ChannelPrincipal)
    return request.user.channel
