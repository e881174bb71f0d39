"""The merchant's back office for channels: sync lag, pending work, dead letters, listings with their quantity."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone
from django.utils.html import format_html

from apps.catalog.resources import CatalogImportExportMixin, catalog_resource
from apps.catalog.signals import Tier
from apps.channels.admin_onboarding import ChannelOnboarding
from apps.channels.forms import CREDENTIALS, SETTINGS, ChannelFormBase, channel_form_class
from apps.channels.models import (
    STOCKROOM_CONNECTOR,
    Channel,
    ChannelLocation,
    DeadLetter,
    DeadLetterRecord,
    Listing,
    SyncWork,
)
from apps.channels.selectors import listings_availability, sync_lag_rows
from apps.channels.services.config import (
    channel_create,
    channel_delete,
    channel_update,
    channel_watermark_set_back,
    listing_create,
    listing_delete,
    listing_update,
    listings_sync_now,
)
from apps.channels.services.connection import channel_connection_test, channel_push_refusal
from apps.channels.services.work import dead_letters_retry
from apps.core.admin import ReadOnlyAdmin, ServiceAdmin, changed_fields, kept_rows, saved_as
from apps.core.durations import duration_text
from apps.core.secrets import secret_state

# A merchant's hand edit is a manual change: its pushes go out at tier 2 (the API's at tier 3).
ADMIN_EDIT_PRIORITY = Tier.MANUAL

# A listing's own settings, in plain words (empty: the channel's).
LISTING_WORDS = {
    "coefficient": (
        "Share of stock shown",
        "The share of what is available that this listing shows: 1 all of it, 0.5 half (rounded down). "
        "Empty: the channel's.",
    ),
    "buffer": ("Units held back", "Units never shown on this listing. Empty: the channel's."),
    "max_qty": ("Show at most", "Never show more than this many, whatever is in stock. Empty: no limit."),
    "end_when": ("Show 0 at or below", "Show 0 once what is available falls to this many. Empty: never."),
}


class ImportSettingSelect(forms.NullBooleanSelect):
    """Empty reads as what it means: the channel kind's default."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs)
        self.choices = [
            ("unknown", "By kind (marketplace and delivery: yes; webshop and point of sale: no)"),
            ("true", "Yes"),
            ("false", "No"),
        ]


class ChannelLocationFormSet(forms.BaseInlineFormSet):
    def location_ids(self) -> list[int]:
        """The locations the channel sells from, in the order orders take from them."""
        rows = kept_rows(self, required="location")
        return [row["location"].pk for row in sorted(rows, key=lambda row: row.get("priority") or 0)]


class ChannelLocationInline(admin.TabularInline):
    model = ChannelLocation
    formset = ChannelLocationFormSet
    extra = 0
    autocomplete_fields = ["location"]
    ordering = ["priority"]


@admin.register(Channel)
class ChannelAdmin(ChannelOnboarding, ServiceAdmin):
    list_display = (
        "code", "name", "kind", "connector", "state_and_setup", "is_active", "imports", "import_cap_units", "pace",
        "batch_size", "pending_work", "sync_lag", "dead_letters", "last_push_at", "orders_pending",
    )  # fmt: skip
    list_filter = ("kind", "connector", "state", "is_active", "can_import")
    search_fields = ("code", "name")
    inlines = [ChannelLocationInline]
    # The order watermark is the channel's to move (through the API); it never moves back.
    # The state changes only by going live, pausing and resuming (``services.golive``), never by a form.
    readonly_fields = (
        "state", "orders_pending_until", "orders_imported_until", "last_push_at", "created_at", "sync_queue",
        "push_secret",
    )  # fmt: skip
    exclude = ("secret", "settings")
    actions = ["sync_all_listings", "test_connection", "watermark_set_back"]
    change_form_template = "admin/channels/channel/change_form.html"

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        # Built per page: one section per installed connector, from its own serializers.
        kwargs["form"] = channel_form_class()
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """Who the channel is, how it is spoken to (the chosen connector's part only, by a script), then sync."""
        form = self.get_form(request, obj, fields=None)
        sections = getattr(form, "sections", [])
        main = [
            name
            for name in (str(field) for field in self.get_fields(request, obj))
            if name != "connector"
            and not name.startswith((f"{SETTINGS}__", f"{CREDENTIALS}__"))
            # A channel not saved yet has no state: a platform channel will start in setup, not "Live".
            and (obj is not None or name not in ("state", "sync_queue"))
        ]
        identity = [name for name in ("code", "name", "kind", "is_active") if name in main]
        fieldsets: list[tuple[str | None, dict[str, Any]]] = [
            (None, {"fields": identity}),
            ("Connector", {"fields": ["connector"]}),
        ]
        for section in sections:
            if section.name == STOCKROOM_CONNECTOR:
                names = ["push_url", "new_secret", "push_secret"]
                title = f"{section.label}: where quantities are pushed"
                description = "Stockroom POSTs signed quantities to this URL; the secret that signs them is "
                description += "write-only (never shown again; a new push URL needs it typed again)."
            else:
                names, title = section.settings + section.credentials, f"{section.label}: settings and credentials"
                description = "Credentials are stored encrypted and never shown again; a blank credential keeps "
                description += "the stored one."
            if names:
                fieldsets.append(
                    (
                        title,
                        {
                            "fields": names,
                            "classes": ["connector-section", f"connector-{section.name}"],
                            "description": description,
                        },
                    )
                )
        rest = [name for name in main if name not in identity and name not in ("push_url", "new_secret", "push_secret")]
        fieldsets.append(("Sync and orders", {"fields": rest}))
        return fieldsets

    def save_model(self, request: HttpRequest, obj: Channel, form: Any, change: bool) -> None:
        """Nothing yet: settings and locations are one service call, in ``save_related``."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        (locations,) = [formset for formset in formsets if isinstance(formset, ChannelLocationFormSet)]
        locations.save(commit=False)  # writes nothing; lists what changed for the history message
        assert isinstance(form, ChannelFormBase)
        plain = {
            name: value
            for name, value in changed_fields(form).items()
            if name not in ("connector", "new_secret") and not name.startswith((f"{SETTINGS}__", f"{CREDENTIALS}__"))
        }
        if form.cleaned_data.get("new_secret"):
            plain["secret"] = form.cleaned_data["new_secret"]
        fields = {**plain, **form.connector_changes()}
        if change:
            channel = Channel.objects.get(pk=form.instance.pk)
            channel_update(
                channel=channel, fields=fields, location_ids=locations.location_ids(), priority=ADMIN_EDIT_PRIORITY
            )
            return
        saved_as(
            form.instance,
            channel_create(fields={**form.cleaned_data, **fields}, location_ids=locations.location_ids()),
        )

    def response_change(self, request: HttpRequest, obj: Channel) -> HttpResponse:
        if "_test_connection" in request.POST:
            self._test_and_tell(request, Channel.objects.get(pk=obj.pk))
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    def response_add(self, request: HttpRequest, obj: Channel, post_url_continue: str | None = None) -> HttpResponse:
        if "_test_connection" in request.POST:
            self._test_and_tell(request, Channel.objects.get(pk=obj.pk))
            return HttpResponseRedirect(f"../{obj.pk}/change/")
        return super().response_add(request, obj, post_url_continue)

    def _test_and_tell(self, request: HttpRequest, channel: Channel) -> None:
        result = channel_connection_test(channel=channel)
        level = messages.SUCCESS if result.ok else messages.ERROR
        self.message_user(request, f"Test connection of {channel.code}: {result.message}", level)

    @admin.action(description="Set the order watermark back to now (a channel moved it into the future)")
    def watermark_set_back(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        now = timezone.now()
        for channel in queryset:
            before = (channel.orders_pending_until, channel.orders_imported_until)
            channel_watermark_set_back(channel=channel, to=now, actor=request.user.get_username())
            self.log_change(
                request,
                channel,
                f"Order watermark set back to {now:%Y-%m-%d %H:%M:%S} UTC (pending was {before[0]}, imported was "
                f"{before[1]}).",
            )
        self.message_user(
            request,
            f"Order watermark of {queryset.count()} channel(s) set back to now: raises wait until the order import "
            "has read past this moment.",
            messages.SUCCESS,
        )

    @admin.action(description="Test connection: ask each selected channel's platform whether it answers")
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        for channel in queryset.order_by("code"):
            self._test_and_tell(request, channel)

    def delete_model(self, request: HttpRequest, obj: Channel) -> None:
        channel_delete(channel=obj)

    @admin.display(description="push secret")
    def push_secret(self, channel: Channel) -> str:
        """Whether one is stored, never its value; "unreadable: enter again" when no configured key opens it."""
        return secret_state(channel.secret) or "—"

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "can_import":
            kwargs["widget"] = ImportSettingSelect
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        # One query for every row's lag, whatever the number of channels.
        self._lag = sync_lag_rows(include_inactive=True)
        self._may_set_up = self.has_change_permission(request)  # the onboarding page needs it
        return super().get_changelist_instance(request)

    def _lag_of(self, channel: Channel) -> dict[str, Any]:
        lag = getattr(self, "_lag", None)
        if lag is None or channel.pk not in lag:
            self._lag = lag = sync_lag_rows(include_inactive=True)
        return lag.get(channel.pk, {})

    @admin.display(description="pending")
    def pending_work(self, channel: Channel) -> int:
        return self._lag_of(channel).get("pending", 0)

    @admin.display(description="sync lag")
    def sync_lag(self, channel: Channel) -> str:
        seconds = self._lag_of(channel).get("oldest_pending_seconds")
        if seconds is None:
            return "in sync"
        return duration_text(seconds)

    @admin.display(description="dead")
    def dead_letters(self, channel: Channel) -> int:
        return self._lag_of(channel).get("dead", 0)

    # A red cross in a list reads as "something is wrong": these columns answer in words, and say
    # nothing at all when all is well.
    @admin.display(description="may import")
    def imports(self, channel: Channel) -> str:
        return "yes" if channel.imports_allowed else "no"

    @admin.display(description="orders not imported")
    def orders_pending(self, channel: Channel) -> str:
        if not channel.has_orders_pending or channel.orders_pending_until is None:
            return ""
        return f"since {timezone.localtime(channel.orders_pending_until):%Y-%m-%d %H:%M} (raises held back)"

    @admin.display(description="state", ordering="state")
    def state_and_setup(self, channel: Channel) -> str:
        """A channel being set up links to its onboarding page; the others to the same page for pause/resume."""
        refusal = channel_push_refusal(channel) if channel.connector != STOCKROOM_CONNECTOR else ""
        shown = (
            channel.get_state_display() if not getattr(self, "_may_set_up", False) else self.onboarding_link(channel)
        )
        if refusal and channel.state != Channel.State.SETUP:
            return format_html('{} <span class="push-refused">{}</span>', shown, refusal)
        return shown

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        channel = Channel.objects.filter(pk=object_id).first() if object_id.isdigit() else None
        may_set_up = channel is not None and self.has_change_permission(request, channel)
        link = self.onboarding_link(channel) if channel is not None and may_set_up else ""
        extra = {"onboarding_link": link, "channel_state": channel}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    @admin.display(description="pace")
    def pace(self, channel: Channel) -> str:
        rate, burst = channel.rate_limit
        own = channel.rate_per_s is not None and channel.burst is not None
        return f"{rate:g}/s, {burst} at once" + ("" if own else " (the platform's)")

    @admin.display(description="Sync queue")
    def sync_queue(self, channel: Channel) -> str:
        return (
            f"sync.{channel.shard}: the workers of this queue push this channel's quantities, one update after "
            "another, so they arrive in order (set by the channel's code)."
        )

    @admin.action(description="Sync now: push every listing of the selected channels")
    def sync_all_listings(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        ids = list(Listing.objects.filter(channel__in=queryset).values_list("pk", flat=True))
        queued = listings_sync_now(listing_ids=ids)
        self.message_user(request, f"Queued {queued} listing(s) for a push.", messages.SUCCESS)


@admin.register(Listing)
class ListingAdmin(CatalogImportExportMixin, ServiceAdmin):
    resource_classes = [catalog_resource("listings")]
    list_display = (
        "channel_sku", "channel", "product", "external_id", "available_now", "last_pushed_qty", "last_pushed_at",
        "is_active",
    )  # fmt: skip
    list_filter = ("channel", "is_active", "product__kind")
    search_fields = ("channel_sku", "external_id", "product__code", "product__name")
    list_select_related = ("channel", "product")
    autocomplete_fields = ["product"]
    readonly_fields = ("last_pushed_qty", "last_pushed_at", "platform_sold_units", "zeroed_by_incident", "created_at")
    actions = ["sync_now"]

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        # The quantity the channel should show, for the whole page in one query.
        self._available = listings_availability([listing.pk for listing in changelist.result_list])
        return changelist

    @admin.display(description="available now")
    def available_now(self, listing: Listing) -> int | None:
        found = getattr(self, "_available", {}).get(listing.pk)
        return None if found is None else found.available

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is not None and db_field.name in LISTING_WORDS:
            field.label, field.help_text = LISTING_WORDS[db_field.name]
        return field

    def save_model(self, request: HttpRequest, obj: Listing, form: Any, change: bool) -> None:
        if change:
            listing = Listing.objects.get(pk=obj.pk)
            listing_update(listing=listing, fields=changed_fields(form), priority=ADMIN_EDIT_PRIORITY)
            return
        saved_as(obj, listing_create(fields=form.cleaned_data, priority=ADMIN_EDIT_PRIORITY))

    def delete_model(self, request: HttpRequest, obj: Listing) -> None:
        listing_delete(listing=obj)

    @admin.action(description="Sync now")
    def sync_now(self, request: HttpRequest, queryset: QuerySet[Listing]) -> None:
        queued = listings_sync_now(listing_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Queued {queued} listing(s) for a push.", messages.SUCCESS)


class _SyncWorkAdminBase(ReadOnlyAdmin):
    list_display = (
        "listing", "channel", "priority", "reason", "age", "attempts", "next_attempt_at", "state", "last_error",
    )  # fmt: skip
    list_filter = ("channel", "priority", "state")
    search_fields = ("listing__channel_sku", "reason", "last_error")
    list_select_related = ("listing__channel", "channel")
    actions = ["retry"]

    @admin.display(description="age")
    def age(self, work: SyncWork) -> str:
        return duration_text(timezone.now() - work.enqueued_at)

    @admin.action(description="Retry: give them fresh attempts and push")
    def retry(self, request: HttpRequest, queryset: QuerySet[SyncWork]) -> None:
        count = dead_letters_retry(work_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Retrying {count} dead letter(s).", messages.SUCCESS)


@admin.register(SyncWork)
class SyncWorkAdmin(_SyncWorkAdminBase):
    pass


@admin.register(DeadLetter)
class DeadLetterAdmin(_SyncWorkAdminBase):
    list_filter = ("channel", "priority", "reason")


@admin.register(DeadLetterRecord)
class DeadLetterRecordAdmin(ReadOnlyAdmin):
    """Every push that died, and whether and when its listing was pushed again (dead letters heal on their own)."""

    list_display = ("listing", "channel", "died_at", "attempts", "error", "channel_failure", "healed_at")
    list_filter = ("channel", "channel_failure", ("healed_at", admin.EmptyFieldListFilter))
    search_fields = ("listing__channel_sku", "error")
    list_select_related = ("listing__channel", "channel")
    date_hierarchy = "died_at"
