"""Staff endpoints for suppliers, mappings and feed runs; the signed webhook suppliers push to."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api.idempotency import IdempotentMixin
from apps.core.api.schema import error_response
from apps.core.parsers import json_loads_strict
from apps.suppliers.api.serializers import (
    FeedRunSerializer,
    QuarantinedRowSerializer,
    SupplierProductSerializer,
    SupplierSerializer,
)
from apps.suppliers.limits import feed_max_bytes
from apps.suppliers.models import FeedRun, Supplier, SupplierProduct
from apps.suppliers.services.ingest import feed_ingest
from apps.suppliers.services.mappings import supplier_product_delete, supplier_product_save
from apps.suppliers.services.polling import feed_refuse
from apps.suppliers.services.suppliers import supplier_create, supplier_delete, supplier_update
from apps.suppliers.services.webhooks import webhook_verify


def _actor(request: Request) -> str:
    return f"staff:{getattr(request.user, 'username', request.user)}"


class SupplierViewSet(IdempotentMixin, viewsets.ModelViewSet):
    """Suppliers by code. Each owns a location of kind `supplier` with the same code; `secret` is write-only."""

    queryset = Supplier.objects.select_related("location").order_by("code")
    serializer_class = SupplierSerializer
    lookup_field = "code"
    lookup_value_regex = r"[^/]+"

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        data = dict(serializer.validated_data)
        serializer.instance = supplier_create(
            code=data.pop("code"),
            name=data.pop("name"),
            connector=data.pop("connector"),
            actor=_actor(self.request),
            **data,
        )

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        assert isinstance(serializer.instance, Supplier)
        serializer.instance = supplier_update(
            supplier=serializer.instance, actor=_actor(self.request), **serializer.validated_data
        )

    def perform_destroy(self, instance: Supplier) -> None:
        supplier_delete(supplier=instance, actor=_actor(self.request))


@extend_schema(
    parameters=[
        OpenApiParameter("supplier", str, description="Supplier code"),
        OpenApiParameter("status", str, enum=[s.value for s in SupplierProduct.Status]),
    ]
)
class SupplierProductViewSet(IdempotentMixin, viewsets.ModelViewSet):
    """Supplier SKU -> item mappings with unit conversion. Setting `status` to `active` confirms a mapping."""

    serializer_class = SupplierProductSerializer

    def get_queryset(self) -> QuerySet[SupplierProduct]:
        queryset = SupplierProduct.objects.select_related("supplier", "item").order_by("supplier__code", "supplier_sku")
        supplier = self.request.query_params.get("supplier")
        if supplier:
            queryset = queryset.filter(supplier__code=supplier)
        wanted = self.request.query_params.get("status")
        if wanted:
            queryset = queryset.filter(status=wanted)
        return queryset

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        data = dict(serializer.validated_data)
        supplier = data.pop("supplier")
        serializer.instance = supplier_product_save(
            mapping=None, supplier=supplier, data=data, actor=_actor(self.request)
        )

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        data = dict(serializer.validated_data)
        data.pop("supplier", None)
        mapping = serializer.instance
        assert isinstance(mapping, SupplierProduct)
        serializer.instance = supplier_product_save(
            mapping=mapping, supplier=mapping.supplier, data=data, actor=_actor(self.request)
        )

    def perform_destroy(self, instance: SupplierProduct) -> None:
        supplier_product_delete(mapping=instance, actor=_actor(self.request))


# The old address of a run's quarantined rows: still answered, marked deprecated, gone in /api/v2/ (docs/api.md).
_DEPRECATED_ACTIONS = {"rejections": "quarantine"}
# When they were deprecated, as RFC 9745 writes it (`@` and the Unix time): 2026-12-07T00:00:00Z.
_DEPRECATED_SINCE = "@1796601600"

_DEPRECATION_HEADERS = [
    OpenApiParameter(
        "Deprecation",
        {"type": "string", "enum": [_DEPRECATED_SINCE]},
        OpenApiParameter.HEADER,
        response=True,
        description=(
            "RFC 9745: this address is deprecated since this moment (`@` and the Unix time, 2026-12-07) and goes "
            "in the next API version (`/api/v2/`)."
        ),
    ),
    OpenApiParameter(
        "Link",
        str,
        OpenApiParameter.HEADER,
        response=True,
        description='The address that replaces it: `<.../feed-runs/{id}/quarantine/>; rel="successor-version"`.',
    ),
]


@extend_schema(parameters=[OpenApiParameter("supplier", str, description="Supplier code")])
class FeedRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Every feed run, newest first, with its row counts; `quarantine/` lists its quarantined rows."""

    serializer_class = FeedRunSerializer

    def get_queryset(self) -> QuerySet[FeedRun]:
        queryset = FeedRun.objects.select_related("supplier").order_by("-started_at", "-id")
        supplier = self.request.query_params.get("supplier")
        if supplier:
            queryset = queryset.filter(supplier__code=supplier)
        wanted = self.request.query_params.get("status")
        if wanted:
            queryset = queryset.filter(status=wanted)
        return queryset

    @extend_schema(responses=QuarantinedRowSerializer(many=True))
    @action(detail=True, methods=["get"])
    def quarantine(self, request: Request, pk: str | None = None) -> Response:
        """The rows of one feed run that were quarantined, each with its reason, in file order."""
        return self._quarantined_page()

    @extend_schema(responses=QuarantinedRowSerializer(many=True), deprecated=True, parameters=_DEPRECATION_HEADERS)
    @action(detail=True, methods=["get"])
    def rejections(self, request: Request, pk: str | None = None) -> Response:
        """Deprecated: the old address of `quarantine/`, with the same rows. Every answer carries
        `Deprecation` (RFC 9745) and a `Link` to `quarantine/`; it goes in the next API version (`/api/v2/`)."""
        return self._quarantined_page()

    def _quarantined_page(self) -> Response:
        run = self.get_object()
        page = self.paginate_queryset(run.quarantined.order_by("row_number", "id"))
        return self.get_paginated_response(QuarantinedRowSerializer(page, many=True).data)

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        successor = _DEPRECATED_ACTIONS.get(getattr(self, "action", None) or "")
        if successor is not None and "pk" in self.kwargs:
            # Errors too (404, 403, 429): an integrator should notice whichever answer it gets.
            response["Deprecation"] = _DEPRECATED_SINCE
            response["Link"] = (
                f'<{self.reverse_action(successor, kwargs={"pk": self.kwargs["pk"]})}>; rel="successor-version"'
            )
        return response


_WEBHOOK_BODY = inline_serializer(
    "SupplierWebhookBody",
    {
        "items": inline_serializer(
            "SupplierWebhookItem",
            {
                "supplier_sku": serializers.CharField(),
                "quantity": serializers.FloatField(),
                "updated_at": serializers.DateTimeField(),
            },
            many=True,
        )
    },
)


class SupplierWebhookView(APIView):
    """Suppliers push stock here. Authentication is the signature, not a token:
    `X-Timestamp` (Unix seconds) and `X-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
    Forged, stale (over 5 minutes) or replayed requests get 401 and are logged.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=_WEBHOOK_BODY,
        responses={
            202: FeedRunSerializer,
            400: error_response("The body is not the expected JSON (`invalid`, `invalid_json`)."),
            401: error_response("Forged, stale (over 5 minutes) or replayed signature."),
            422: error_response(
                "Mostly bad rows, or over the size limit: refused whole (`feed_refused`, with the `run`), nothing "
                "applied."
            ),
        },
        auth=[],
    )
    def post(self, request: Request, code: str) -> Response:
        body: bytes = request.body
        supplier = webhook_verify(
            supplier_code=code,
            timestamp=request.headers.get("X-Timestamp"),
            signature=request.headers.get("X-Signature"),
            body=body,
            remote=request.META.get("REMOTE_ADDR", ""),
        )
        if len(body) > feed_max_bytes(supplier.settings.get("max_bytes")):
            reason = f"webhook body of {len(body)} bytes is over the {feed_max_bytes()}-byte limit (FEED_MAX_BYTES)"
            run = feed_refuse(supplier=supplier, source="webhook", reason=reason)
        else:
            payload: Any = json_loads_strict(body)  # 400 invalid_json / invalid_text
            if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
                return Response(
                    {
                        "code": "invalid",
                        "detail": 'Expected {"items": [{"supplier_sku", "quantity", "updated_at"}]}.',
                        "errors": [],
                    },
                    status=status.HTTP_400_BAD_REQUEST,
                )
            run = feed_ingest(supplier=supplier, records=payload["items"], fmt="json", source="webhook", full=False)
        data = FeedRunSerializer(run).data
        if run.status == FeedRun.Status.REFUSED:
            return Response(
                {"code": "feed_refused", "detail": run.error, "errors": [], "run": data},
                status=status.HTTP_422_UNPROCESSABLE_ENTITY,
            )
        if run.status == FeedRun.Status.FAILED:
            return Response(
                {"code": "feed_failed", "detail": run.error, "errors": [], "run": data},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(data, status=status.HTTP_202_ACCEPTED)
