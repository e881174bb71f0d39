from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from django_prometheus.exports import ExportToDjangoView

from apps.core.health import dependency_states, overall_status, readiness_states, ready, sources


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 ok, 200 degraded (Redis or broker down, reservations still work; or stored secrets no key opens,
    named), 503 (no database)."""
    states = dependency_states()
    status, code = overall_status(states)
    return JsonResponse({"status": status, "checks": states, "sources": sources()}, status=code)


@require_GET
def healthz_ready(request: HttpRequest) -> JsonResponse:
    """For a load balancer: 200 while PostgreSQL and Redis answer, else 503 (send traffic elsewhere)."""
    states = readiness_states()
    ok = ready(states)
    return JsonResponse({"status": "ready" if ok else "not_ready", "checks": states}, status=200 if ok else 503)


@require_GET
def healthz_live(request: HttpRequest) -> JsonResponse:
    """For a process supervisor: 200 while the process answers at all (no dependency is asked)."""
    return JsonResponse({"status": "alive"})


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
