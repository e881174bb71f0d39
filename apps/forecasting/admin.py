"""The forecast's knobs and the reorder rules (through their services), the "To reorder" list with
its CSV; forecasts, overrides and the audit are read-only here."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from apps.catalog.models import Location
from apps.catalog.units import quantity_text
from apps.core.admin import ReadOnlyAdmin, ServiceAdmin, changed_fields, saved_as
from apps.core.errors import DomainError
from apps.core.spreadsheets import csv_writer
from apps.forecasting.models import (
    ForecastSettings,
    ReorderRule,
    ReorderSuggestion,
    SafetyAudit,
    SafetyForecast,
    SafetyOverride,
)
from apps.forecasting.selectors import ReorderPlan, reorder_csv_rows, reorder_list, reorder_plan
from apps.forecasting.services.forecast_settings import forecast_settings_update
from apps.forecasting.services.reorder import (
    POINTS,
    REORDER_KINDS,
    reorder_purchase_orders_place,
    reorder_rule_create,
    reorder_rule_update,
    reorder_transfers_draft,
)


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
    """Items at or below their reorder point: spare stock elsewhere is transferred first, the rest bought.

    Ticked rows become draft transfers (one per pair of places) or purchase orders (one per
    supplier, as receipts due); the list downloads as CSV.
    """

    change_list_template = "admin/forecasting/reordersuggestion/change_list.html"
    list_display = (
        "item_shown",
        "location_shown",
        "on_hand_shown",
        "reserved_shown",
        "on_order_shown",
        "reorder_point_shown",
        "order_up_to_shown",
        "suggested_shown",
        "transfer_shown",
        "purchase_shown",
        "supplier_shown",
    )
    list_display_links = None
    ordering = ("location__code", "item__sku")
    list_filter = (ReorderLocationFilter, "source")
    search_fields = ("item__sku", "item__name")
    actions = ["transfers_draft", "purchase_orders_place", "export_csv"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return reorder_list()

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {"title": "To reorder", **(extra_context or {})})

    def plans(self, request: HttpRequest) -> dict[int, ReorderPlan]:
        """The plan of the whole list (spare stock is shared across it), once per request."""
        cached = getattr(request, "reorder_plans", None)
        if cached is None:
            cached = reorder_plan(reorder_list())
            request.reorder_plans = cached  # type: ignore[attr-defined]
        return cached

    @staticmethod
    def _plan(rule: Any) -> ReorderPlan:
        return getattr(rule, "plan", None) or ReorderPlan(rule_id=rule.pk, shortfall=0)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        plans = self.plans(request)
        for rule in changelist.result_list:  # the display columns read each row's plan
            rule.plan = plans.get(rule.pk)
        return changelist

    def has_transfer_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("catalog.add_transfer")

    def has_purchase_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("suppliers.add_purchaseorder") and request.user.has_perm("catalog.add_receipt")

    @admin.display(description="Item", ordering="item__sku")
    def item_shown(self, rule: ReorderSuggestion) -> str:
        return f"{rule.item.sku} · {rule.item.name}"

    @admin.display(description="Location", ordering="location__code")
    def location_shown(self, rule: ReorderSuggestion) -> str:
        return rule.location.code

    @admin.display(description="On hand", ordering="on_hand")
    def on_hand_shown(self, rule: Any) -> str:
        return quantity_text(int(rule.on_hand), rule.item.unit)

    @admin.display(description="Reserved", ordering="reserved")
    def reserved_shown(self, rule: Any) -> str:
        return quantity_text(int(rule.reserved), rule.item.unit)

    @admin.display(description="On order or coming", ordering="on_order")
    def on_order_shown(self, rule: Any) -> str:
        return quantity_text(int(rule.on_order) + int(rule.coming), rule.item.unit)

    @admin.display(description="Reorder point", ordering="reorder_point")
    def reorder_point_shown(self, rule: Any) -> str:
        return quantity_text(rule.reorder_point, rule.item.unit)

    @admin.display(description="Order up to", ordering="order_up_to")
    def order_up_to_shown(self, rule: Any) -> str:
        return quantity_text(rule.order_up_to, rule.item.unit)

    @admin.display(description="Needed", ordering="suggested")
    def suggested_shown(self, rule: Any) -> str:
        return quantity_text(int(rule.suggested), rule.item.unit)

    @admin.display(description="Transfer first")
    def transfer_shown(self, rule: Any) -> str:
        plan = self._plan(rule)
        if not plan.transfers:
            return "-"
        return format_html_join(
            ", ",
            '<span class="transfer-from" data-source="{}">{} from {}</span>',
            ((t.source.code, quantity_text(t.quantity, rule.item.unit), t.source.code) for t in plan.transfers),
        )

    @admin.display(description="Then buy")
    def purchase_shown(self, rule: Any) -> str:
        plan = self._plan(rule)
        if not plan.purchase:
            return "-"
        packs = f" ({plan.purchase // rule.pack_size} packs of {rule.pack_size})" if rule.pack_size > 1 else ""
        return f"{quantity_text(plan.purchase, rule.item.unit)}{packs}"

    @admin.display(description="Supplier (lead time)")
    def supplier_shown(self, rule: Any) -> str:
        plan = self._plan(rule)
        days = f"{plan.lead_time_days} day{'s' if plan.lead_time_days != 1 else ''}"
        if plan.supplier is None:
            return format_html('<span class="no-supplier">none mapped</span> ({})', days)
        return format_html('<span class="supplier">{}</span> ({})', plan.supplier.name, days)

    # --- Actions on the ticked rows, each one service call -----------------------------------------

    @admin.action(description="Draft transfers from spare stock for the selected rows", permissions=["transfer"])
    def transfers_draft(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        rule_ids = list(queryset.values_list("pk", flat=True))
        try:
            transfers = reorder_transfers_draft(rule_ids=rule_ids, actor=request.user.get_username())
        except DomainError as err:
            self.message_user(request, err.detail, messages.ERROR)
            return
        if not transfers:
            self.message_user(request, "No spare stock elsewhere for the selected rows: buy them.", messages.INFO)
            return
        links = format_html_join(
            ", ",
            '<a href="{}">{} {} → {}</a>',
            (
                (reverse("admin:catalog_transfer_change", args=[t.pk]), t, t.source.code, t.destination.code)
                for t in transfers
            ),
        )
        text = "Drafted {} transfer(s): {}. Ship them from their source; the rows count them as coming."
        self.message_user(request, format_html(text, len(transfers), links), messages.SUCCESS)

    @admin.action(description="Purchase orders for the selected rows (one per supplier)", permissions=["purchase"])
    def purchase_orders_place(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        rule_ids = list(queryset.values_list("pk", flat=True))
        try:
            result = reorder_purchase_orders_place(rule_ids=rule_ids, actor=request.user.get_username())
        except DomainError as err:
            self.message_user(request, err.detail, messages.ERROR)
            return
        for order in result.orders:
            receipts = list(order.receipts.select_related("location").order_by("location__code"))
            links = format_html_join(
                ", ",
                '<a href="{}">{} at {} on {}</a>',
                (
                    (reverse("admin:catalog_receipt_change", args=[r.pk]), r, r.location.code, r.expected_on)
                    for r in receipts
                ),
            )
            text = "{} to {}: receipts due {}."
            self.message_user(request, format_html(text, order.number, order.supplier.name, links), messages.SUCCESS)
        if result.without_supplier:
            skus = ", ".join(result.without_supplier)
            self.message_user(
                request,
                f"No supplier is mapped for {skus}: map one under Suppliers, or order by hand.",
                messages.WARNING,
            )
        if not result.orders and not result.without_supplier:
            self.message_user(request, "Nothing to buy for the selected rows: transfers cover them.", messages.INFO)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.export_view)
        return [path("export.csv", view, name="forecasting_reordersuggestion_export"), *super().get_urls()]

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """The whole list as filtered on the page (location, source, search), as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        return self._csv(request, changelist.get_queryset(request))

    @admin.action(description="Download selected as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse:
        return self._csv(request, queryset)

    def _csv(self, request: HttpRequest, rules: QuerySet[Any]) -> HttpResponse:
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="to-reorder-{stamp}.csv"'
        writer = csv_writer(response)
        for row in reorder_csv_rows(rules.select_related("item", "location"), self.plans(request)):
            writer.writerow(row)
        return response
