"""One onboarding page per channel in the back office: connect -> locations -> link -> opening stock -> go live.

Each step is one call of the go-live services (``services.link``, ``services.golive``, ``services.config``);
the page only keeps the last preview of a step in the cache (per channel and user) so that thousands of rows
can be filtered and paged without reading the platform again. The page also shows the channel's state with
pause and resume, and the order webhooks the platform calls. It needs the permission to change the channel.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from apps.catalog.models import Location, Movement
from apps.catalog.signals import Tier
from apps.channels.connectors.base import Catalog
from apps.channels.models import Channel
from apps.channels.services.config import channel_update
from apps.channels.services.connection import (
    channel_connection_test,
    channel_connector,
    channel_credential_names,
    channel_push_refusal,
)
from apps.channels.services.discover import catalog_read_dict, catalog_read_latest, catalog_read_start
from apps.channels.services.golive import (
    GoLiveNeedsConfirmation,
    GoLiveRefused,
    channel_go_live,
    channel_go_live_blockers,
    channel_linked_listings,
    channel_opening_stock,
    channel_pause,
    channel_resume,
    opening_reference,
    webhook_address,
)
from apps.channels.services.link import (
    CATALOG_FRESH_S,
    catalog_entries_load,
    catalog_read_fresh,
    channel_link,
    channel_platform_locations,
    mapping_sheet_read,
)
from apps.core.errors import DomainError

PAGE_ROWS = 100  # rows of a preview table per page
KEPT_S = 3600  # how long a preview stays on the page
LINK_KINDS = (
    ("matched", "Matched"),
    ("platform_only", "Only on the platform"),
    ("stockroom_only", "Only in Stockroom"),
    ("problems", "Problems"),
)
PROBLEM_WORDS = {
    "duplicate_sku": "two variants share the SKU",
    "no_sku": "no SKU",
    "untracked": "quantity not tracked",
    "not_stocked_at_location": "not stocked at the platform location",
    "platform_managed": "stock kept by the platform",
    "already_linked": "already linked otherwise",
}


class LocationsForm(forms.Form):
    platform_location = forms.ChoiceField(
        label="Platform location",
        required=False,
        widget=forms.RadioSelect,
        help_text="Where on the platform Stockroom sets the quantities.",
    )
    locations = forms.ModelMultipleChoiceField(
        label="Stockroom locations this channel sells from",
        queryset=Location.objects.order_by("code"),
        widget=forms.CheckboxSelectMultiple,
        help_text="What is available at these locations is what the channel shows.",
    )


class LinkForm(forms.Form):
    mapping = forms.FileField(
        label="Mapping sheet (optional)",
        required=False,
        help_text="CSV platform_sku,product: names the product of a platform SKU whose code is not that SKU.",
    )
    create_missing = forms.BooleanField(
        label="Create the items and products that Stockroom does not have yet, from the platform's catalog",
        required=False,
    )


class OpeningForm(forms.Form):
    platform_location = forms.ChoiceField(label="Quantities at the platform location")
    location = forms.ChoiceField(label="Book them at the Stockroom location")


MAP_FIELD = "map:"  # one input per platform location: the Stockroom location codes it shows


def _maps_locations(channel: Channel) -> bool:
    """Whether the channel's connector takes a ``location_map`` (a platform with several stock locations)."""
    try:
        return "location_map" in channel_connector(channel).settings_serializer().fields
    except (LookupError, ImportError):
        return False


def _location_map_rows(channel: Channel, platform_locations: list[Any]) -> list[dict[str, str]]:
    """Each platform location with the codes the channel's map gives it now, for the map's inputs."""
    if not platform_locations or not _maps_locations(channel):
        return []
    mapped = (channel.settings or {}).get("location_map") or {}
    return [
        {
            "id": loc.id,
            "name": loc.name + ("" if loc.active else " (inactive)"),
            "field": f"{MAP_FIELD}{loc.id}",
            "codes": ", ".join(mapped.get(loc.id) or []),
        }
        for loc in platform_locations
    ]


def _location_map_posted(request: HttpRequest) -> dict[str, list[str]]:
    """The map's inputs as posted: platform location -> Stockroom location codes (locations left empty out)."""
    mapped: dict[str, list[str]] = {}
    for name in request.POST:
        if name.startswith(MAP_FIELD):
            value = str(request.POST.get(name, ""))
            codes = [code.strip() for code in value.replace(";", ",").split(",") if code.strip()]
            if codes:
                mapped[name.removeprefix(MAP_FIELD)] = codes
    return mapped


def _preview_key(step: str, channel: Channel, request: HttpRequest) -> str:
    return f"onboarding:{step}:{channel.pk}:{request.user.pk}"


def _location_setting(channel: Channel) -> str:
    """The connector setting that names the platform location ("" where the platform has only one)."""
    try:
        fields = channel_connector(channel).settings_serializer().fields
    except (LookupError, ImportError):
        return ""
    return next((name for name in ("location_id", "marketplace_id") if name in fields), "")


LINK_COLUMNS = ("sku", "external_id", "product", "title", "platform_quantity", "stockroom_quantity", "code", "detail")


def _link_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of a link answer with the same columns (a row has only those of its kind)."""
    rows = []
    for kind, _label in LINK_KINDS:
        for row in result.get(kind, []):
            rows.append({**dict.fromkeys(LINK_COLUMNS), **row, "kind": kind})
    return rows


class ChannelOnboarding:
    """The onboarding page of ``ChannelAdmin`` (a mixin: it uses the admin's permissions and messages)."""

    admin_site: Any
    opts: Any

    def get_urls(self) -> list[URLPattern]:
        onboarding = path(
            "<int:channel_id>/onboarding/",
            self.admin_site.admin_view(self.onboarding_view),
            name="channels_channel_onboarding",
        )
        progress = path(
            "<int:channel_id>/onboarding/catalog-read/",
            self.admin_site.admin_view(self.catalog_read_view),
            name="channels_channel_catalog_read",
        )
        return [onboarding, progress, *super().get_urls()]  # type: ignore[misc]

    @staticmethod
    def onboarding_link(channel: Channel) -> str:
        url = reverse("admin:channels_channel_onboarding", args=[channel.pk])
        if channel.state == Channel.State.SETUP:
            return format_html('<a class="button onboarding-link" href="{}">Set up and go live</a>', url)
        return format_html('<a class="onboarding-link" href="{}">{}</a>', url, channel.get_state_display())

    # --- The page --------------------------------------------------------------------------------

    def onboarding_view(self, request: HttpRequest, channel_id: int) -> HttpResponse:
        channel = get_object_or_404(Channel, pk=channel_id)
        if not self.has_change_permission(request, channel):  # type: ignore[attr-defined]
            raise PermissionDenied
        if request.method == "POST":
            step = request.POST.get("step", "")
            handler = getattr(self, f"_onboarding_{step}", None)
            if handler is None:
                raise PermissionDenied
            anchor = handler(request, channel)
            return HttpResponseRedirect(f"{request.path}#{anchor}")
        return self._onboarding_page(request, channel)

    def catalog_read_view(self, request: HttpRequest, channel_id: int) -> JsonResponse:
        """The progress of the channel's latest catalog read, for the page's progress bar (polled)."""
        channel = get_object_or_404(Channel, pk=channel_id)
        if not self.has_change_permission(request, channel):  # type: ignore[attr-defined]
            raise PermissionDenied
        return JsonResponse({"read": catalog_read_dict(catalog_read_latest(channel))})

    def _tell(self, request: HttpRequest, text: str, level: int = messages.SUCCESS) -> None:
        self.message_user(request, text, level)  # type: ignore[attr-defined]

    def _onboarding_page(self, request: HttpRequest, channel: Channel) -> HttpResponse:
        platform = channel.connector != "stockroom"
        setting = _location_setting(channel) if platform else ""
        platform_locations: list[Any] = []
        locations_error = ""
        configured = bool(channel_credential_names(channel)) if platform else True
        if platform and configured:
            try:
                platform_locations = channel_platform_locations(channel=channel)
            except DomainError as err:
                locations_error = err.detail
        choices = [
            (loc.id, f"{loc.name} ({loc.id})" + ("" if loc.active else ", inactive")) for loc in platform_locations
        ]
        chosen = str((channel.settings or {}).get(setting, "")) if setting else ""
        locations_form = LocationsForm(
            initial={
                "platform_location": chosen,
                "locations": list(channel.channel_locations.values_list("location_id", flat=True)),
            }
        )
        platform_field = locations_form.fields["platform_location"]
        assert isinstance(platform_field, forms.ChoiceField)
        platform_field.choices = choices
        opening_form = OpeningForm(initial={"platform_location": chosen})
        opening_platform = opening_form.fields["platform_location"]
        assert isinstance(opening_platform, forms.ChoiceField)
        opening_platform.choices = choices or [("", "the platform's only location")]
        opening_location = opening_form.fields["location"]
        assert isinstance(opening_location, forms.ChoiceField)
        opening_location.choices = [
            (loc.code, str(loc)) for loc in Location.objects.exclude(kind=Location.Kind.SUPPLIER).order_by("code")
        ]
        link = cache.get(_preview_key("link", channel, request))
        opening = cache.get(_preview_key("opening", channel, request))
        first_push = cache.get(_preview_key("golive", channel, request))
        blockers = channel_go_live_blockers(channel) if channel.state == Channel.State.SETUP else []
        linked = channel_linked_listings(channel).count()
        opening_booked = Movement.objects.filter(reference=opening_reference(channel)).count()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Set up {channel.code}: connect, link, go live",
            "channel": channel,
            "platform": platform,
            "configured": configured,
            "credential_names": channel_credential_names(channel) if platform else [],
            "location_setting": setting,
            "chosen_location": chosen,
            "chosen_location_name": dict(choices).get(chosen, chosen),
            "platform_locations": platform_locations,
            "location_map_rows": _location_map_rows(channel, platform_locations),
            "locations_error": locations_error,
            "locations_form": locations_form,
            "selling_from": list(channel.channel_locations.select_related("location").order_by("priority")),
            "link_form": LinkForm(initial={"create_missing": bool(link and link["create_missing"])}),
            "link": self._link_context(request, link),
            "linked": linked,
            "opening_form": opening_form,
            "opening": self._paged(request, opening["results"], "opage") if opening else None,
            "opening_result": opening,
            "opening_booked": opening_booked,
            "may_book_stock": request.user.has_perm("catalog.add_movement"),
            "first_push": first_push,
            "first_push_page": self._paged(request, first_push["items"], "gpage") if first_push else None,
            "blockers": blockers,
            "webhooks": list(channel.webhooks.all()),
            "webhook_address": webhook_address(channel) if platform else "",
            "push_refusal": channel_push_refusal(channel) if platform and channel.state != Channel.State.SETUP else "",
            "steps": self._steps(channel, configured, chosen, setting, linked, opening_booked),
            "catalog_read": catalog_read_dict(catalog_read_latest(channel)) if platform else None,
            "catalog_fresh_min": CATALOG_FRESH_S // 60,
        }
        return TemplateResponse(request, "admin/channels/channel/onboarding.html", context)

    def _steps(
        self, channel: Channel, configured: bool, chosen: str, setting: str, linked: int, opening_booked: int
    ) -> list[dict[str, Any]]:
        has_locations = channel.channel_locations.exists() and (bool(chosen) or not setting)
        return [
            {"id": "connect", "name": "Connect", "done": configured},
            {"id": "locations", "name": "Locations", "done": has_locations},
            {"id": "link", "name": "Link by SKU", "done": linked > 0, "note": f"{linked} listings"},
            {"id": "opening", "name": "Opening stock (optional)", "done": opening_booked > 0},
            {"id": "golive", "name": "Go live", "done": channel.state != Channel.State.SETUP},
        ]

    def _paged(self, request: HttpRequest, rows: list[dict[str, Any]], param: str) -> Any:
        return Paginator(rows, PAGE_ROWS).get_page(request.GET.get(param))

    def _link_context(self, request: HttpRequest, link: dict[str, Any] | None) -> dict[str, Any] | None:
        if link is None:
            return None
        result = link["result"]
        show = request.GET.get("show", "")
        code = request.GET.get("code", "")
        query = request.GET.get("q", "").strip().lower()
        rows = _link_rows(result)
        if show:
            rows = [row for row in rows if row["kind"] == show]
        if code:
            rows = [row for row in rows if row.get("code") == code]
        if query:
            rows = [row for row in rows if query in str(row.get("sku", "")).lower()]
        codes: dict[str, int] = {}
        for problem in result["problems"]:
            codes[problem["code"]] = codes.get(problem["code"], 0) + 1
        return {
            "applied": link["applied"],
            "create_missing": link["create_missing"],
            "mapping_rows": len(link["mapping"]),
            "created": result["created"],
            "counts": [(kind, label, len(result[kind])) for kind, label in LINK_KINDS],
            "codes": [(c, PROBLEM_WORDS.get(c, c), n) for c, n in sorted(codes.items())],
            "show": show,
            "code": code,
            "q": request.GET.get("q", ""),
            "page": self._paged(request, rows, "page"),
            "shown": len(rows),
        }

    # --- The steps, each one service call --------------------------------------------------------

    def _onboarding_test(self, request: HttpRequest, channel: Channel) -> str:
        result = channel_connection_test(channel=channel)
        self._tell(request, f"Test connection: {result.message}", messages.SUCCESS if result.ok else messages.ERROR)
        return "connect"

    def _onboarding_locations(self, request: HttpRequest, channel: Channel) -> str:
        form = LocationsForm(request.POST)
        field = form.fields["platform_location"]
        assert isinstance(field, forms.ChoiceField)
        chosen = request.POST.get("platform_location", "")
        field.choices = [(chosen, chosen)] if chosen else []
        if not form.is_valid():
            self._tell(request, "Choose the Stockroom locations the channel sells from.", messages.ERROR)
            return "locations"
        setting = _location_setting(channel)
        fields: dict[str, Any] = {}
        mapped = _location_map_posted(request)
        if mapped and _maps_locations(channel):
            # Several platform locations, each showing its own Stockroom locations (``settings.location_map``).
            settings = {key: value for key, value in (channel.settings or {}).items() if key != "location_id"}
            fields["settings"] = {**settings, "location_map": mapped}
            chosen = ", ".join(f"{place} = {'+'.join(codes)}" for place, codes in mapped.items())
        elif setting and chosen:
            settings = {key: value for key, value in (channel.settings or {}).items() if key != "location_map"}
            fields["settings"] = {**settings, setting: chosen}
        location_ids = [location.pk for location in form.cleaned_data["locations"]]
        try:
            channel_update(channel=channel, fields=fields, location_ids=location_ids, priority=Tier.MANUAL)
        except DomainError as err:
            self._tell(request, err.detail, messages.ERROR)
            return "locations"
        codes = ", ".join(location.code for location in form.cleaned_data["locations"])
        where = f" at platform location {chosen}" if chosen else ""
        self._tell(request, f"Saved: quantities are set{where}, from what is available at {codes}.")
        return "link"

    def _onboarding_catalog_read(self, request: HttpRequest, channel: Channel) -> str:
        try:
            read = catalog_read_start(channel=channel, actor=f"staff:{request.user.get_username()}", again=True)
        except DomainError as err:
            self._tell(request, err.detail, messages.ERROR)
            return "catalog"
        if read.state != read.State.DONE:
            self._tell(
                request, "Reading the platform's catalog in the background: the bar below shows how far.", messages.INFO
            )
        return "catalog"

    def _catalog(self, request: HttpRequest, channel: Channel) -> Catalog | None:
        """The channel's fresh catalog read; without one, a read is started (the page shows its progress)
        and the step waits for it: nothing is read from the platform inside the request."""
        fresh = catalog_read_fresh(channel)
        if fresh is not None and fresh.entries is not None:
            return catalog_entries_load(fresh.entries, fresh.requests)
        try:
            catalog_read_start(channel=channel, actor=f"staff:{request.user.get_username()}")
        except DomainError as err:
            self._tell(request, err.detail, messages.ERROR)
            return None
        self._tell(
            request,
            "Reading the platform's catalog in the background first (the bar below shows how far); "
            "preview again when it is read.",
            messages.INFO,
        )
        return None

    def _onboarding_link_preview(self, request: HttpRequest, channel: Channel) -> str:
        return self._link(request, channel, apply=False)

    def _onboarding_link_apply(self, request: HttpRequest, channel: Channel) -> str:
        return self._link(request, channel, apply=True)

    def _link(self, request: HttpRequest, channel: Channel, *, apply: bool) -> str:
        key = _preview_key("link", channel, request)
        form = LinkForm(request.POST, request.FILES)
        form.is_valid()
        previous = cache.get(key) or {}
        upload = form.cleaned_data.get("mapping")
        create_missing = bool(form.cleaned_data.get("create_missing"))
        catalog = self._catalog(request, channel)
        if catalog is None:
            return "catalog"
        try:
            if upload is not None:
                mapping = mapping_sheet_read(upload.read())
            else:
                mapping = previous.get("mapping", {}) if apply else {}
            result = channel_link(
                channel=channel,
                apply=apply,
                mapping=mapping,
                create_missing=create_missing,
                actor=f"staff:{request.user.get_username()}",
                catalog=catalog,
            )
        except DomainError as err:
            self._tell(request, err.detail, messages.ERROR)
            return "link"
        data = result.as_dict()
        cache.set(key, {"result": data, "applied": apply, "mapping": mapping, "create_missing": create_missing}, KEPT_S)
        counts = f"{len(data['matched'])} matched, {len(data['platform_only'])} only on the platform, "
        counts += f"{len(data['problems'])} problems"
        if apply:
            self._tell(request, f"Linked: {data['created']} listings created ({counts}).")
        else:
            self._tell(request, f"Preview: {counts}; applying creates {data['created']} listings.", messages.INFO)
        return "link"

    def _onboarding_opening_preview(self, request: HttpRequest, channel: Channel) -> str:
        return self._opening(request, channel, apply=False)

    def _onboarding_opening_apply(self, request: HttpRequest, channel: Channel) -> str:
        if not request.user.has_perm("catalog.add_movement"):
            raise PermissionDenied
        return self._opening(request, channel, apply=True)

    def _opening(self, request: HttpRequest, channel: Channel, *, apply: bool) -> str:
        key = _preview_key("opening", channel, request)
        catalog = self._catalog(request, channel)
        if catalog is None:
            return "catalog"
        try:
            result = channel_opening_stock(
                channel=channel,
                platform_location=request.POST.get("platform_location", ""),
                location_code=request.POST.get("location", ""),
                apply=apply,
                actor=f"staff:{request.user.get_username()}",
                catalog=catalog,
            )
        except DomainError as err:
            self._tell(request, err.detail, messages.ERROR)
            return "opening"
        data = result.as_dict()
        cache.set(key, data, KEPT_S)
        if apply:
            text = f"Opening stock at {result.location}: {result.booked} count movements booked"
            if result.already_booked:
                text += f", {result.already_booked} items were booked before (not again)"
            self._tell(request, f"{text}.")
        else:
            differing = sum(1 for line in data["results"] if line["difference"])
            self._tell(
                request,
                f"Preview: {len(data['results'])} items, {differing} differ from Stockroom's on hand.",
                messages.INFO,
            )
        return "opening"

    def _onboarding_golive_preview(self, request: HttpRequest, channel: Channel) -> str:
        return self._go_live(request, channel, confirm=False)

    def _onboarding_golive_confirm(self, request: HttpRequest, channel: Channel) -> str:
        return self._go_live(request, channel, confirm=True)

    def _go_live(self, request: HttpRequest, channel: Channel, *, confirm: bool) -> str:
        key = _preview_key("golive", channel, request)
        catalog = self._catalog(request, channel) if not channel_go_live_blockers(channel) else Catalog()
        if catalog is None:
            return "catalog"
        try:
            done = channel_go_live(
                channel=channel, confirm=confirm, actor=f"staff:{request.user.get_username()}", catalog=catalog
            )
        except GoLiveNeedsConfirmation as err:
            first = err.data["first_push"]
            cache.set(key, first, KEPT_S)
            self._tell(
                request,
                f"Going live sends {first['listings']} listings: {first['changes']} change on the platform, "
                f"{first['to_zero']} of them to 0. Check them, then confirm.",
                messages.INFO,
            )
            return "golive"
        except GoLiveRefused as err:
            reasons = "; ".join(reason["detail"] for reason in err.data.get("reasons") or [])
            self._tell(request, f"Not yet: {reasons or err.detail}", messages.ERROR)
            return "golive"
        except DomainError as err:
            self._tell(request, err.detail, messages.ERROR)
            return "golive"
        cache.delete(key)
        self._tell(
            request,
            f"{channel.code} is live: {done.queued} listings queued for the first push, "
            f"{len(done.webhooks)} order webhooks subscribed.",
        )
        return "state"

    def _onboarding_pause(self, request: HttpRequest, channel: Channel) -> str:
        try:
            channel_pause(channel=channel, actor=f"staff:{request.user.get_username()}")
        except DomainError as err:
            self._tell(request, err.detail, messages.ERROR)
        else:
            self._tell(request, f"{channel.code} is paused: nothing is sent to the platform; orders still come in.")
        return "state"

    def _onboarding_resume(self, request: HttpRequest, channel: Channel) -> str:
        try:
            channel_resume(channel=channel, actor=f"staff:{request.user.get_username()}")
        except DomainError as err:
            self._tell(request, err.detail, messages.ERROR)
        else:
            self._tell(request, f"{channel.code} is live again: every listing is queued for a push.")
        return "state"
