from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from django_prometheus.exports import ExportToDjangoView

from apps.core.health import dependency_states, overall_status, sources


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 ok, 200 degraded (Redis or broker down, reservations still work), 503 (no database)."""
    states = dependency_states()
    status, code = overall_status(states)
    return JsonResponse({"status": status, "checks": states, "sources": sources()}, status=code)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    return ExportToDjangoView(request)
