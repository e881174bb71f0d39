"""Token authentication: only hashes stored; valid, invalid, revoked, wrong kind; one error shape."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.decorators import api_view, permission_classes
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory

from apps.channels.models import Channel
from apps.core.models import ApiToken, hash_token
from apps.core.permissions import IsChannelToken, IsStaffToken
from apps.core.services import token_create, token_revoke

pytestmark = pytest.mark.django_db


@pytest.fixture
def channel():
    return Channel.objects.create(code="shop1", name="Webshop")


def client_with(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def test_only_the_hash_is_stored(staff_user):
    raw = token_create(staff_username=staff_user.username)
    token = ApiToken.objects.get()
    assert token.key_hash == hash_token(raw) and raw not in (token.key_hash, token.prefix, token.name)
    assert token.prefix == raw[:8]


def test_staff_and_channel_tokens_identify_their_owner(staff_user, channel):
    staff = client_with(token_create(staff_username=staff_user.username)).get("/api/v1/whoami/")
    assert staff.status_code == 200 and staff.json()["kind"] == "staff" and staff.json()["name"] == "staffer"
    shop = client_with(token_create(channel_code="shop1")).get("/api/v1/whoami/")
    assert shop.status_code == 200 and shop.json() == {
        "kind": "channel",
        "name": "shop1",
        "token_prefix": ApiToken.objects.get(channel=channel).prefix,
    }


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("Token not-a-real-token", "Invalid token."),
        ("Token a b", "Malformed Authorization header: expected 'Token <key>'."),
        ("Bearer 0123abcd", "The Authorization scheme 'Bearer' is not accepted: send 'Authorization: Token <key>'."),
        ("Basic dXNlcjpwdw==", "The Authorization scheme 'Basic' is not accepted: send 'Authorization: Token <key>'."),
    ],
)
def test_invalid_tokens_are_401_with_code(header, detail):
    """A wrong token, a malformed header, or another scheme: each 401 says what is expected."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/whoami/")
    assert response.status_code == 401
    assert response.json() == {"code": "authentication_failed", "detail": detail, "errors": []}
    assert response["WWW-Authenticate"] == "Token"


def test_missing_token_is_401():
    response = APIClient().get("/api/v1/whoami/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_revoked_token_is_refused(staff_user):
    raw = token_create(staff_username=staff_user.username)
    token_revoke(token=ApiToken.objects.get())
    response = client_with(raw).get("/api/v1/whoami/")
    assert response.status_code == 401
    assert response.json() == {"code": "authentication_failed", "detail": "Token has been revoked.", "errors": []}


def test_a_remembered_token_is_forgotten_when_it_or_its_owner_changes(
    staff_user, channel, django_assert_num_queries, settings
):
    settings.API_TOKEN_CACHE_SECONDS = 3600  # forgetting is what is tested here, not the clock
    shop = client_with(token_create(channel_code="shop1"))
    assert shop.get("/api/v1/whoami/").status_code == 200
    with django_assert_num_queries(0):  # remembered: no token query on the next call
        assert shop.get("/api/v1/whoami/").status_code == 200
    channel.is_active = False
    channel.save()
    refused = shop.get("/api/v1/whoami/")
    assert refused.status_code == 401 and refused.json()["detail"] == "Channel is inactive."

    revoked = client_with(token_create(staff_username=staff_user.username))
    assert revoked.get("/api/v1/whoami/").status_code == 200
    token_revoke(token=ApiToken.objects.get(user=staff_user))  # a queryset update, no save signal
    assert revoked.get("/api/v1/whoami/").status_code == 401

    staff = client_with(token_create(staff_username=staff_user.username))
    assert staff.get("/api/v1/whoami/").status_code == 200
    staff_user.is_active = False
    staff_user.save()
    assert staff.get("/api/v1/whoami/").json()["detail"] == "User is inactive."


def test_tokens_only_for_staff_users(django_user_model):
    django_user_model.objects.create_user(username="shopper", password="x")
    with pytest.raises(Exception, match="not staff"):
        token_create(staff_username="shopper")


@api_view(["GET"])
@permission_classes([IsStaffToken])
def staff_only(request):
    return Response({"ok": True})


@api_view(["GET"])
@permission_classes([IsChannelToken])
def channel_only(request):
    return Response({"ok": True})


def test_wrong_kind_of_token_is_403(staff_user, channel):
    # A view without a model to judge permissions by is for superusers (test_security has the rest).
    staff_user.is_superuser = True
    staff_user.save(update_fields=["is_superuser"])
    factory = APIRequestFactory()
    staff_raw = token_create(staff_username=staff_user.username)
    channel_raw = token_create(channel_code="shop1")

    def call(view, raw):
        return view(factory.get("/x", HTTP_AUTHORIZATION=f"Token {raw}"))

    assert call(staff_only, staff_raw).status_code == 200
    assert call(channel_only, channel_raw).status_code == 200
    refused = call(staff_only, channel_raw)
    assert refused.status_code == 403
    assert refused.data == {
        "code": "permission_denied",
        "detail": "A staff token is required for this endpoint.",
        "errors": [],
    }
    assert call(channel_only, staff_raw).status_code == 403


def test_create_token_command_prints_the_key_once(staff_user, channel, capsys):
    call_command("create_token", "--channel", "shop1")
    out, err = capsys.readouterr()
    raw = out.strip()
    assert "shown only now" in err
    assert ApiToken.objects.get(channel=channel).key_hash == hash_token(raw)
    assert client_with(raw).get("/api/v1/whoami/").json()["name"] == "shop1"


def test_create_token_command_refuses_unknown_owner():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No channel"):
        call_command("create_token", "--channel", "nope")


def test_unknown_api_path_is_404_json(staff_api):
    response = staff_api.post("/api/v1/whoami/", {}, format="json")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_throttle_counts_per_token_and_answers_429(staff_user, channel, monkeypatch):
    from apps.core.throttling import TokenRateThrottle

    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "3/min"})
    staff = client_with(token_create(staff_username=staff_user.username))
    other = client_with(token_create(channel_code="shop1"))
    assert [staff.get("/api/v1/whoami/").status_code for _ in range(3)] == [200, 200, 200]
    refused = staff.get("/api/v1/whoami/")
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled" and 0 < refused.json()["retry_after"] <= 61
    assert other.get("/api/v1/whoami/").status_code == 200, "another token has its own budget"


def test_no_credentials_is_401_naming_the_scheme():
    response = APIClient().get("/api/v1/whoami/")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    assert response.json() == {
        "code": "not_authenticated",
        "detail": "No credentials: send 'Authorization: Token <key>'.",
        "errors": [],
    }
