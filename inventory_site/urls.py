from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.core.views import healthz, healthz_live, healthz_ready, metrics

api_v1: list[URLPattern | URLResolver] = [
    path("", include("apps.core.api.urls")),
    path("", include("apps.catalog.api.urls")),
    path("", include("apps.channels.api.urls")),
    path("", include("apps.orders.api.urls")),
    path("", include("apps.suppliers.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("staff/", include("apps.staff.urls")),
    path("healthz", healthz, name="healthz"),
    path("healthz/ready", healthz_ready, name="healthz-ready"),
    path("healthz/live", healthz_live, name="healthz-live"),
    path("metrics", metrics, name="metrics"),
]
