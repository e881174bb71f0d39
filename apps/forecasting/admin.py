"""The forecast's knobs and the reorder rules (through their services), the "To reorder" list with
its CSV; forecasts, overrides and the audit are read-only here."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils import timezone

from apps.catalog.models import Item, Location
from apps.core.admin import ReadOnlyAdmin, ServiceAdmin, changed_fields, saved_as
from apps.core.spreadsheets import csv_writer
from apps.forecasting.models import (
    ForecastSettings,
    ReorderRule,
    ReorderSuggestion,
    SafetyAudit,
    SafetyForecast,
    SafetyOverride,
)
from apps.forecasting.selectors import reorder_csv_rows, reorder_list
from apps.forecasting.services.forecast_settings import forecast_settings_update
from apps.forecasting.services.reorder import POINTS, REORDER_KINDS, reorder_rule_create, reorder_rule_update


@admin.register(ForecastSettings)
class ForecastSettingsAdmin(ServiceAdmin):
    list_display = ("service_level", "sync_latency_seconds", "reaction_seconds", "history_weeks", "half_life_weeks")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not ForecastSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: ForecastSettings | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ForecastSettings, form: Any, change: bool) -> None:
        saved = forecast_settings_update(fields=changed_fields(form), actor=f"admin:{request.user}")
        saved_as(obj, saved)


@admin.register(SafetyForecast)
class SafetyForecastAdmin(ReadOnlyAdmin):
    """Recomputed from the ledger by the nightly job; change the knobs (Forecast settings) instead."""

    list_display = ("item", "location", "slot", "value", "mean_per_hour", "std_per_hour", "computed_at")
    list_filter = ("location",)
    search_fields = ("item__sku", "item__name")
    list_select_related = ("item", "location")


@admin.register(SafetyOverride)
class SafetyOverrideAdmin(ReadOnlyAdmin):
    """Read-only here: overrides are set and cleared on the staff page, where they are audited and applied at once."""

    list_display = ("item", "location", "value", "reason", "valid_until", "created_by", "updated_at")
    list_filter = ("location",)
    search_fields = ("item__sku", "item__name", "reason")
    list_select_related = ("item", "location", "created_by")


@admin.register(SafetyAudit)
class SafetyAuditAdmin(ReadOnlyAdmin):
    list_display = ("at", "who", "kind", "item", "location", "old_safety", "new_safety", "reason")
    list_filter = ("kind", "location")
    search_fields = ("item__sku", "who", "reason")
    list_select_related = ("item", "location")


class ReorderRuleForm(forms.ModelForm):
    class Meta:
        model = ReorderRule
        fields = (
            "item",
            "location",
            "source",
            "lead_time_days",
            "cover_days",
            "reorder_point",
            "order_up_to",
            "pack_size",
            "min_order",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("source") == ReorderRule.Source.FORECAST:
            for name in POINTS:
                if name in self.changed_data:
                    self.add_error(name, "This follows the forecast: choose “Set by hand” to keep your own.")
        return data


@admin.register(ReorderRule)
class ReorderRuleAdmin(ServiceAdmin):
    """When to reorder what: points follow the forecast (lead time x demand + safety) unless set by hand."""

    form = ReorderRuleForm
    list_display = (
        "item",
        "location",
        "source",
        "lead_time_days",
        "demand_shown",
        "safety",
        "reorder_point",
        "order_up_to",
        "pack_size",
        "min_order",
        "computed_at",
    )
    list_filter = ("source", "location")
    search_fields = ("item__sku", "item__name")
    list_select_related = ("item", "location")
    readonly_fields = ("demand_per_day", "safety", "computed_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("item", "location", "source")}),
        ("Forecast", {"fields": ("lead_time_days", "cover_days", "demand_per_day", "safety", "computed_at")}),
        ("Points", {"fields": ("reorder_point", "order_up_to", "pack_size", "min_order", "updated_at")}),
    )

    @admin.display(description="Demand per day", ordering="demand_per_day")
    def demand_shown(self, rule: ReorderRule) -> str:
        return f"{rule.demand_per_day:.2f}"

    def get_readonly_fields(self, request: HttpRequest, obj: ReorderRule | None = None) -> tuple[str, ...]:
        fixed = ("item", "location") if obj is not None else ()
        return (*fixed, *self.readonly_fields)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.related_model is Location:
            kwargs["queryset"] = Location.objects.filter(kind__in=REORDER_KINDS, is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request: HttpRequest, obj: ReorderRule | None = None) -> bool:
        return False  # every stocked item gets its rule back at the next recompute: set it by hand instead

    def save_model(self, request: HttpRequest, obj: ReorderRule, form: Any, change: bool) -> None:
        actor = f"admin:{request.user}"
        if change:
            fields = {k: v for k, v in changed_fields(form).items() if k not in ("item", "location")}
            saved = reorder_rule_update(rule_id=obj.pk, fields=fields, actor=actor)
        else:
            fields = {k: v for k, v in form.cleaned_data.items() if k not in ("item", "location")}
            saved = reorder_rule_create(
                item=form.cleaned_data["item"], location=form.cleaned_data["location"], fields=fields, actor=actor
            )
        saved_as(obj, saved)


class ReorderLocationFilter(admin.SimpleListFilter):
    title = "location"
    parameter_name = "location"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        places = Location.objects.filter(kind__in=REORDER_KINDS, is_active=True).order_by("code")
        return [(place.code, f"{place.code} {place.name}") for place in places]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(location__code=self.value()) if self.value() else queryset


@admin.register(ReorderSuggestion)
class ToReorderAdmin(ReadOnlyAdmin):
    """Items at or below their reorder point, with the quantity to order; the list downloads as CSV."""

    change_list_template = "admin/forecasting/reordersuggestion/change_list.html"
    list_display = (
        "item_shown",
        "location_shown",
        "on_hand_shown",
        "reserved_shown",
        "on_order_shown",
        "reorder_point",
        "order_up_to",
        "suggested_shown",
        "pack_size",
        "source",
    )
    list_display_links = None
    ordering = ("location__code", "item__sku")
    list_filter = (ReorderLocationFilter, "source")
    search_fields = ("item__sku", "item__name")
    actions = ["export_csv"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return reorder_list()

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {"title": "To reorder", **(extra_context or {})})

    @admin.display(description="Item", ordering="item__sku")
    def item_shown(self, rule: ReorderSuggestion) -> str:
        unit = "" if rule.item.unit == Item.Unit.PIECE else f" (in {rule.item.unit})"
        return f"{rule.item.sku} · {rule.item.name}{unit}"

    @admin.display(description="Location", ordering="location__code")
    def location_shown(self, rule: ReorderSuggestion) -> str:
        return rule.location.code

    @admin.display(description="On hand", ordering="on_hand")
    def on_hand_shown(self, rule: Any) -> int:
        return int(rule.on_hand)

    @admin.display(description="Reserved", ordering="reserved")
    def reserved_shown(self, rule: Any) -> int:
        return int(rule.reserved)

    @admin.display(description="On order", ordering="on_order")
    def on_order_shown(self, rule: Any) -> int:
        return int(rule.on_order)

    @admin.display(description="Suggested quantity", ordering="suggested")
    def suggested_shown(self, rule: Any) -> int:
        return int(rule.suggested)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.export_view)
        return [path("export.csv", view, name="forecasting_reordersuggestion_export"), *super().get_urls()]

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """The whole list as filtered on the page (location, source, search), as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        return self._csv(changelist.get_queryset(request))

    @admin.action(description="Download selected as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse:
        return self._csv(queryset)

    def _csv(self, rules: QuerySet[Any]) -> HttpResponse:
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="to-reorder-{stamp}.csv"'
        writer = csv_writer(response)
        for row in reorder_csv_rows(rules.select_related("item", "location")):
            writer.writerow(row)
        return response
