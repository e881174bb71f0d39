"""Each staff user edits their own notification settings here; nobody sees another's. Users get
the locations they work at ("Locations" on the user page), which a merchant sets for store staff."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from apps.catalog.access import user_locations
from apps.catalog.models import Location, LocationMember
from apps.catalog.services.access import user_locations_set
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


# --- Users and the locations they work at -------------------------------------------------------

# Who may set the locations of users without being allowed to change users (merchants): the
# locations are the only field they can change there, never passwords, groups or superuser status.
ASSIGN_PERMISSION = "catalog.change_locationmember"

User = get_user_model()


def _locations_field() -> forms.ModelMultipleChoiceField:
    return forms.ModelMultipleChoiceField(
        queryset=Location.objects.exclude(kind=Location.Kind.SUPPLIER).order_by("code"),
        required=False,
        widget=FilteredSelectMultiple("locations", is_stacked=False),
        help_text="Store staff see and work at these locations only (none chosen: none). "
        "Merchants and viewers see every location whatever is chosen here.",
    )


class AssignedLocations:
    """Starts a user form's "locations" at the locations the user is assigned to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        instance = self.instance  # type: ignore[attr-defined]
        if instance.pk is not None:
            self.initial["locations"] = list(user_locations(instance))  # type: ignore[attr-defined]


class UserWithLocationsForm(AssignedLocations, UserChangeForm):
    locations = _locations_field()


class UserLocationsOnlyForm(AssignedLocations, forms.ModelForm):
    """The user page of a merchant who may assign locations but not change users: the locations only."""

    locations = _locations_field()

    class Meta:
        model = get_user_model()
        fields: list[str] = []


class UserWithLocationsAdmin(UserAdmin):
    """Django's user admin with the user's locations; a merchant may set only those."""

    form = UserWithLocationsForm
    fieldsets = (
        *(UserAdmin.fieldsets or ()),
        ("Locations", {"fields": ("locations",)}),
    )
    # What a merchant who may assign locations but not change users sees of a user.
    assign_only_fieldsets = (
        (None, {"fields": ("username", "first_name", "last_name", "email")}),
        ("Role", {"fields": ("is_active", "is_staff", "groups")}),
        ("Locations", {"fields": ("locations",)}),
    )
    list_display = ("username", "email", "first_name", "last_name", "is_staff", "roles", "locations")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        memberships = Prefetch("location_memberships", queryset=LocationMember.objects.select_related("location"))
        return super().get_queryset(request).prefetch_related("groups", memberships)

    @admin.display(description="Roles")
    def roles(self, user: Any) -> str:
        return ", ".join(sorted(group.name for group in user.groups.all())) or "-"

    @admin.display(description="Locations")
    def locations(self, user: Any) -> str:
        return ", ".join(sorted(m.location.code for m in user.location_memberships.all())) or "-"

    def may_change_users(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(super().has_change_permission(request, obj))

    def may_assign(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(ASSIGN_PERMISSION))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.may_change_users(request, obj) or self.may_assign(request)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None and not self.may_change_users(request, obj):
            kwargs["form"] = UserLocationsOnlyForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and not self.may_change_users(request, obj):
            return self.assign_only_fieldsets
        return super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and not self.may_change_users(request, obj):
            fields = [name for _, options in self.assign_only_fieldsets for name in options["fields"]]
            return [name for name in fields if name != "locations" or not self.may_assign(request)]
        return super().get_readonly_fields(request, obj)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change or self.may_change_users(request, obj):
            super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        if self.may_change_users(request, form.instance):
            super().save_related(request, form, formsets, change)  # groups and permissions
        if "locations" in form.changed_data:
            user_locations_set(user=form.instance, locations=form.cleaned_data["locations"])

    def _add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        if not self.may_change_users(request):
            raise PermissionDenied  # adding a user takes the right to change users, as in Django's own admin
        return super()._add_view(request, form_url, extra_context)  # type: ignore[misc]

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        if not self.may_change_users(request, self.get_object(request, unquote(id))):
            raise PermissionDenied
        return super().user_change_password(request, id, form_url)


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, UserWithLocationsAdmin)
