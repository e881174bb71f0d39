from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.authentication import ChannelPrincipal
from apps.core.models import ApiToken


@extend_schema(
    summary="Who does this token belong to?",
    responses=inline_serializer(
        "WhoAmI",
        {
            "kind": serializers.ChoiceField(choices=["staff", "channel"]),
            "name": serializers.CharField(),
            "token_prefix": serializers.CharField(),
        },
    ),
)
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def whoami(request: Request) -> Response:
    """Lets an integrator check a token before wiring anything else."""
    user = request.user
    if isinstance(user, ChannelPrincipal):
        body = {"kind": "channel", "name": user.channel.code}
    else:
        body = {"kind": "staff", "name": user.get_username()}
    token = request.auth
    assert isinstance(token, ApiToken)
    return Response({**body, "token_prefix": token.prefix})
