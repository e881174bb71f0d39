"""The forecast's knobs (through their service); forecasts, overrides and the audit are read-only here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.core.admin import ReadOnlyAdmin, ServiceAdmin, changed_fields, saved_as
from apps.forecasting.models import ForecastSettings, SafetyAudit, SafetyForecast, SafetyOverride
from apps.forecasting.services.forecast_settings import forecast_settings_update


@admin.register(ForecastSettings)
class ForecastSettingsAdmin(ServiceAdmin):
    list_display = ("service_level", "sync_latency_seconds", "reaction_seconds", "history_weeks", "half_life_weeks")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not ForecastSettings.objects.exists()

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
