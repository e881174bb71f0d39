"""The back office's site: named Stockroom, "View site" opens the staff dashboard, the merchant's
work first and the machinery last, under "System"."""

from __future__ import annotations

from typing import Any

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest
from django.urls import reverse

# Sections in the order a merchant uses them; apps not named here follow, then "System".
BUSINESS_ORDER = ["catalog", "orders", "channels", "suppliers", "forecasting", "demo", "staff", "auth", "core"]

# Records the system writes for itself: shown under "System", after the business screens.
SYSTEM_MODELS = {
    "core.idempotencyrecord",
    "channels.syncwork",
    "channels.deadletter",
    "suppliers.webhookreceipt",
    "orders.webhookdelivery",
    "django_celery_beat.periodictask",
    "django_celery_beat.intervalschedule",
    "django_celery_beat.crontabschedule",
    "django_celery_beat.solarschedule",
    "django_celery_beat.clockedschedule",
    "axes.accessattempt",
    "axes.accessfailurelog",
    "axes.accesslog",
}
# Whole apps that are only plumbing.
SYSTEM_APPS = {"django_celery_beat", "axes"}


class StockroomAdminSite(AdminSite):
    site_header = "Stockroom"
    site_title = "Stockroom"
    index_title = "Back office"
    site_url = "/staff/"

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        apps = super().get_app_list(request, app_label)
        if app_label is not None:
            return apps  # one app's own page: as it is
        business, system_models = [], []
        for app in apps:
            kept = []
            for model in app["models"]:
                label = f"{app['app_label']}.{model['object_name'].lower()}"
                if app["app_label"] in SYSTEM_APPS or label in SYSTEM_MODELS:
                    system_models.append({**model, "name": f"{model['name']} ({app['name']})"})
                else:
                    kept.append(model)
            if kept:
                business.append({**app, "models": kept})
        rank = {label: i for i, label in enumerate(BUSINESS_ORDER)}
        business.sort(key=lambda app: (rank.get(app["app_label"], len(rank)), app["name"]))
        if system_models:
            business.append(
                {
                    "name": "System",
                    "app_label": "system",
                    "app_url": reverse(f"{self.name}:index") + "#system",
                    "has_module_perms": True,
                    "models": system_models,
                }
            )
        return business


class StockroomAdminConfig(AdminConfig):
    default_site = "inventory_site.admin_site.StockroomAdminSite"
