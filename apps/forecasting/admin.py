from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.forecasting.models import ForecastSettings, SafetyAudit, SafetyForecast, SafetyOverride


@admin.register(ForecastSettings)
class ForecastSettingsAdmin(admin.ModelAdmin):
    list_display = ("service_level", "sync_latency_seconds", "reaction_seconds", "history_weeks", "half_life_weeks")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not ForecastSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: ForecastSettings | None = None) -> bool:
        return False


@admin.register(SafetyForecast)
class SafetyForecastAdmin(admin.ModelAdmin):
    list_display = ("item", "location", "slot", "value", "mean_per_hour", "std_per_hour", "computed_at")
    list_filter = ("location",)
    search_fields = ("item__sku", "item__name")
    list_select_related = ("item", "location")
    readonly_fields = [f.name for f in SafetyForecast._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(SafetyOverride)
class SafetyOverrideAdmin(admin.ModelAdmin):
    """Read-only here: overrides are set on the staff page, where they are audited and applied at once."""

    list_display = ("item", "location", "value", "reason", "valid_until", "created_by", "updated_at")
    list_filter = ("location",)
    search_fields = ("item__sku", "item__name", "reason")
    list_select_related = ("item", "location", "created_by")
    readonly_fields = [f.name for f in SafetyOverride._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(SafetyAudit)
class SafetyAuditAdmin(admin.ModelAdmin):
    list_display = ("at", "who", "kind", "item", "location", "old_safety", "new_safety", "reason")
    list_filter = ("kind", "location")
    search_fields = ("item__sku", "who", "reason")
    list_select_related = ("item", "location")
    readonly_fields = [f.name for f in SafetyAudit._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SafetyAudit | None = None) -> bool:
        return False
