from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from django_prometheus.exports import ExportToDjangoView

from apps.core.health import dependency_states, overall_status, sources


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 ok, 200 degraded (Redis or broker down, reservations still work; or stored secrets no key opens,
    named), 503 (no database)."""
    states = dependency_states()
    status, code = overall_status(states)
    return JsonResponse({"status": status, "checks": states, "sources": sources()}, status=code)


def _may_read_metrics(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    if expected:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode()):
            return True
    elif settings.METRICS_PUBLIC:
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics: `Authorization: Bearer <METRICS_TOKEN>`, a staff session, or open (METRICS_PUBLIC)."""
    if not _may_read_metrics(request):
        response = JsonResponse(
            {
                "code": "not_authenticated",
                "detail": "Metrics need `Authorization: Bearer <METRICS_TOKEN>`.",
                "errors": [],
            },
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return ExportToDjangoView(request)
