"""The back office's shared base, and tokens and idempotency records (read-only plumbing)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename, get_user_model
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from apps.core.errors import DomainError
from apps.core.models import ApiToken, IdempotencyRecord, hash_token
from apps.core.services import token_channel_model, token_create, token_owners_allowed, token_revoke


def changed_fields(form: Any) -> dict[str, Any]:
    """What the merchant changed on the form, as a service takes it: {field: cleaned value}."""
    return {name: form.cleaned_data[name] for name in form.changed_data if name in form.cleaned_data}


def kept_rows(formset: Any, required: str) -> list[dict[str, Any]]:
    """The cleaned rows of an inline formset that the merchant kept: filled in (``required``) and not deleted."""
    return [
        form.cleaned_data
        for form in formset.forms
        if form.cleaned_data and not form.cleaned_data.get("DELETE") and form.cleaned_data.get(required)
    ]


def saved_as(obj: Model, saved: Model) -> None:
    """The admin goes on with its own ``obj`` (history, redirect, inlines): make it the record a service created."""
    obj.pk = saved.pk
    obj._state.adding = False


class DefaultChoiceFilter(admin.SimpleListFilter):
    """A list filter that starts on one of its choices (``default``) instead of "All"."""

    default = "open"

    def current(self) -> str:
        return str(self.value() or self.default)

    def choices(self, changelist: Any) -> Any:
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.current() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }


class ServiceAdmin(admin.ModelAdmin):
    """A back office whose writes go through the app's services, as the API's do.

    Subclasses that allow writes override ``save_model`` / ``save_related`` / ``delete_model``
    to call services; ``delete_queryset`` (the "delete selected" action) goes through
    ``delete_model`` one record at a time. A service refusing a write (a ``DomainError``) rolls
    the whole admin request back and is shown as an error message, where the API answers 4xx.
    """

    # An address typed without a scheme is taken as https (Django 6's default, set now).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def _refused(self, request: HttpRequest, err: DomainError) -> HttpResponse:
        self.message_user(request, err.detail, messages.ERROR)
        return HttpResponseRedirect(request.get_full_path())

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        # An admin may offer "add" less often than the permission allows (one settings row), never more.
        if not request.user.has_perm(f"{self.opts.app_label}.{get_permission_codename('add', self.opts)}"):
            raise PermissionDenied
        return super().add_view(request, form_url, extra_context)

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().changeform_view(request, *args, **kwargs)
        except DomainError as err:
            return self._refused(request, err)

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().delete_view(request, *args, **kwargs)
        except DomainError as err:
            return self._refused(request, err)

    def changelist_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().changelist_view(request, *args, **kwargs)
        except DomainError as err:
            return self._refused(request, err)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        """An action that names no ``allowed_permissions`` acts on the records (sync, retry, resolve,
        cancel...): it needs the model's change permission, even where the admin itself is read-only."""
        change = f"{self.opts.app_label}.{get_permission_codename('change', self.opts)}"
        may_change = request.user.has_perm(change)
        return {
            name: action
            for name, action in super().get_actions(request).items()
            if action is not None and (may_change or getattr(action[0], "allowed_permissions", None))
        }

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """Records the system keeps (sync work, tokens...) go with what owns them, as the service deletes them."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        kept_by_system = {
            str(model._meta.verbose_name)
            for model, model_admin in self.admin_site._registry.items()
            if isinstance(model_admin, ReadOnlyAdmin)
        }
        return deleted, counts, perms_needed - kept_by_system, protected

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            self.delete_model(request, obj)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} allows deletes but names no service for them")


class ReadOnlyAdmin(ServiceAdmin):
    """Records the system writes (ledger, sync work, audit, idempotency): shown, never edited here.

    Actions that call a service (retry, revoke, cancel) stay available.
    """

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ApiTokenCreateForm(forms.Form):
    """Who the token is for: one staff user or one channel, and a label to tell it apart."""

    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_staff=True, is_active=True).order_by("username"),
        required=False,
        help_text="A staff user; the token carries that user's permissions.",
    )
    channel = forms.ModelChoiceField(
        queryset=token_channel_model().objects.order_by("code"),
        required=False,
        help_text="Or a channel; the token sees that channel's own listings and orders only.",
    )
    name = forms.CharField(max_length=120, required=False, help_text="A label, e.g. where the key is kept.")

    def __init__(self, *args: Any, by: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only users whose rights are all the asker's own (a token carries its user's rights).
        user = self.fields["user"]
        assert isinstance(user, forms.ModelChoiceField)
        allowed = [owner.pk for owner in token_owners_allowed(by=by)]
        user.queryset = get_user_model().objects.filter(pk__in=allowed).order_by("username")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if bool(cleaned.get("user")) == bool(cleaned.get("channel")):
            raise forms.ValidationError("Choose either a staff user or a channel.")
        return cleaned


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Made here or with `manage.py create_token`: the raw key is shown once, then only its prefix. Revoked here."""

    list_display = ("prefix_shown", "name", "user", "channel", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at", "channel")
    search_fields = ("prefix", "name", "user__username", "channel__code")
    list_select_related = ("user", "channel")
    actions = ["revoke"]

    @admin.display(description="Key", ordering="prefix")
    def prefix_shown(self, token: ApiToken) -> str:
        return f"{token.prefix}…"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return admin.ModelAdmin.has_add_permission(self, request)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ApiTokenCreateForm(request.POST if request.method == "POST" else None, by=request.user)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Add API token",
            "form": form,
        }
        if request.method == "POST" and form.is_valid():
            user, channel = form.cleaned_data["user"], form.cleaned_data["channel"]
            try:
                raw = token_create(
                    staff_username=user.get_username() if user else None,
                    channel_code=channel.code if channel else None,
                    name=form.cleaned_data["name"],
                    by=request.user,
                )
            except DomainError as err:
                form.add_error(None, err.detail)
            else:
                token = ApiToken.objects.select_related("user", "channel").get(key_hash=hash_token(raw))
                self.log_addition(request, token, [{"added": {}}])
                # The key lives only in this answer (admin pages are never cached): not in the session,
                # not in a redirect.
                return TemplateResponse(
                    request,
                    "admin/core/apitoken/created.html",
                    {**context, "title": "API token created", "token": token, "key": raw},
                )
        return TemplateResponse(request, "admin/core/apitoken/add.html", context)

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked, refused = 0, []
        for token in queryset.filter(revoked_at__isnull=True).select_related("user"):
            try:
                token_revoke(token=token, by=request.user)
            except DomainError:
                refused.append(f"{token.prefix}…")
            else:
                revoked += 1
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)
        if refused:
            self.message_user(
                request,
                f"Not revoked (their users hold rights you do not): {', '.join(refused)}.",
                messages.ERROR,
            )


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    list_display = ("scope", "key", "status_code", "created_at")
    search_fields = ("scope", "key")
    list_filter = ("status_code",)
