"""Each staff user edits their own notification settings here; nobody sees another's."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from apps.core.admin import ServiceAdmin
from apps.staff.models import NotificationPreference
from apps.staff.services import notification_preference_get, notification_preference_set


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(ServiceAdmin):
    fields = ("incidents", "low_stock")

    def _own(self, request: HttpRequest, obj: Any = None) -> bool:
        user = request.user
        return bool(user.is_active and user.is_staff) and (obj is None or obj.user_id == user.pk)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._own(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._own(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._own(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made on first visit, by the service

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).filter(user_id=request.user.pk)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        """The list has one row, the user's own: go straight to it."""
        own = notification_preference_get(user=request.user)
        return HttpResponseRedirect(reverse("admin:staff_notificationpreference_change", args=[own.pk]))

    def save_model(self, request: HttpRequest, obj: NotificationPreference, form: Any, change: bool) -> None:
        notification_preference_set(
            user=request.user, incidents=form.cleaned_data["incidents"], low_stock=form.cleaned_data["low_stock"]
        )

    def response_change(self, request: HttpRequest, obj: NotificationPreference) -> HttpResponse:
        self.message_user(request, "Your notification settings are saved.", messages.SUCCESS)
        return HttpResponseRedirect(request.path)
