"""Order webhooks of a channel's platform: ``POST /api/v1/channels/<code>/webhooks/<connector>/``.

No token: the platform signs each delivery, and the channel's connector verifies the signature
over the exact body bytes. An unknown channel, another connector and a bad signature answer alike
(401 ``invalid_signature``); a signed body that is not the platform's order is a 400. No
Idempotency-Key either: a delivery carries its own id, and a redelivery is answered 200 without
applying it again.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.channels.connectors import CONNECTOR_CHOICES
from apps.core.api.schema import error_response
from apps.orders.services.intake import platform_webhook_receive

_PLATFORMS = [name for name, _ in CONNECTOR_CHOICES if name != "stockroom"]

WEBHOOK_ANSWER = inline_serializer(
    "PlatformWebhookAnswer",
    {
        "delivery_id": serializers.CharField(help_text="The platform's id of this delivery."),
        "topic": serializers.CharField(help_text="What the delivery is about (`orders/create`...)."),
        "duplicate": serializers.BooleanField(help_text="`true`: this delivery was received before; nothing done."),
        "orders": inline_serializer(
            "PlatformWebhookOrder",
            {
                "external_id": serializers.CharField(help_text="The platform's order id."),
                "result": serializers.ChoiceField(
                    choices=["created", "updated", "unchanged", "partial", "tombstoned", "skipped", "rejected"],
                    help_text="`rejected`: kept with its reason for staff (a SKU not listed...), not lost. "
                    "`partial`: applied but for lines kept for staff. `tombstoned`: a cancel of an order not "
                    "seen yet, kept so that its late create is not imported (`skipped`, with the reason).",
                ),
                "order": serializers.IntegerField(allow_null=True, help_text="Stockroom's order id, if stored."),
                "detail": serializers.CharField(),
            },
            many=True,
        ),
    },
)


class PlatformWebhookView(APIView):
    """A platform's order webhook (Shopify `orders/create`, `orders/updated`, `orders/cancelled`; WooCommerce
    `order.created`, `order.updated`), verified by the channel's connector.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Receive a platform's order webhook",
        description="Point the platform's order webhooks here. Authentication is the platform's own signature "
        "over the raw body (Shopify `X-Shopify-Hmac-Sha256`, WooCommerce `X-WC-Webhook-Signature`), checked "
        "with the channel's stored webhook secret; no token, no Idempotency-Key. Each order is imported "
        "(reserving what stock allows), fulfilled or cancelled as the platform shows it; applying the same "
        "order again changes nothing. A redelivery (same delivery id) answers 200 with `duplicate: true`. An "
        "order that cannot be applied (a SKU not listed) is kept for staff with its reason and still answers "
        "200, so the platform does not retry what only staff can fix.",
        parameters=[
            OpenApiParameter("code", OpenApiTypes.STR, OpenApiParameter.PATH, description="The channel's code."),
            OpenApiParameter(
                "connector",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                enum=_PLATFORMS,
                description="The channel's connector; another one answers as a bad signature does.",
            ),
        ],
        request={"application/json": OpenApiTypes.OBJECT},
        responses={
            200: WEBHOOK_ANSWER,
            400: error_response(
                "Signed, but the body is not the platform's order JSON (`invalid_webhook`): not JSON, nested "
                "deeper than 32 levels, a key twice, a field of the wrong type."
            ),
            401: error_response(
                "The signature does not match the channel's webhook secret (`invalid_signature`). An unknown "
                "channel code, or a channel on another connector, answers exactly the same."
            ),
            429: error_response("Too many requests from this address (`throttled`); retry after `retry_after`."),
        },
        examples=[
            OpenApiExample(
                "A new order",
                value={
                    "delivery_id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                    "topic": "orders/create",
                    "duplicate": False,
                    "orders": [{"external_id": "820982911946154508", "result": "created", "order": 1042, "detail": ""}],
                },
                response_only=True,
            )
        ],
        auth=[],
    )
    def post(self, request: Request, code: str, connector: str) -> Response:
        received = platform_webhook_receive(
            channel_code=code, connector_name=connector, headers=request.headers, body=request.body
        )
        return Response(
            {
                "delivery_id": received.delivery_id,
                "topic": received.topic,
                "duplicate": received.duplicate,
                "orders": [
                    {
                        "external_id": applied.external_id,
                        "result": applied.result,
                        "order": applied.order.pk if applied.order is not None else None,
                        "detail": applied.detail,
                    }
                    for applied in received.applied
                ],
            }
        )
