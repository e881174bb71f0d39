"""Every back-office page writes through services; records the system keeps are read-only there."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory

from apps.core.admin import ReadOnlyAdmin, ServiceAdmin
from apps.core.models import ApiToken
from apps.core.services import token_create

pytestmark = pytest.mark.django_db

OURS = [(model, admin_) for model, admin_ in admin.site._registry.items() if model.__module__.startswith("apps.")]


@pytest.fixture
def superuser_request(admin_user):
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    return request


def test_every_admin_of_every_app_is_a_service_admin():
    assert {m._meta.app_label for m, _ in OURS} >= {"catalog", "channels", "core", "forecasting", "orders", "suppliers"}
    assert [type(a).__name__ for _, a in OURS if not isinstance(a, ServiceAdmin)] == []


@pytest.mark.parametrize(("model", "model_admin"), OURS, ids=[m.__name__ for m, _ in OURS])
def test_each_write_an_admin_allows_names_its_service(model, model_admin, superuser_request):
    """Adding or changing overrides save_model (or save_related, or add_view for a form of its own);
    deleting overrides delete_model."""
    kind = type(model_admin)
    if model_admin.has_change_permission(superuser_request):
        assert kind.save_model is not admin.ModelAdmin.save_model, kind.__name__
    if model_admin.has_add_permission(superuser_request):
        own_add_view = kind.add_view is not admin.ModelAdmin.add_view
        assert own_add_view or kind.save_model is not admin.ModelAdmin.save_model, kind.__name__
    if model_admin.has_delete_permission(superuser_request):
        assert kind.delete_model is not ServiceAdmin.delete_model, kind.__name__


@pytest.mark.parametrize(
    "label",
    [
        "catalog.movement", "catalog.stocklevel", "channels.syncwork", "channels.deadletter",
        "core.idempotencyrecord", "forecasting.safetyforecast", "forecasting.safetyoverride",
        "forecasting.safetyaudit", "orders.order", "orders.orderline", "orders.orderevent", "suppliers.feedrun",
    ],
)  # fmt: skip
def test_plumbing_is_read_only(label, superuser_request):
    model = next(m for m, _ in OURS if m._meta.label_lower == label)
    model_admin = admin.site._registry[model]
    assert isinstance(model_admin, ReadOnlyAdmin)
    assert not model_admin.has_add_permission(superuser_request)
    assert not model_admin.has_change_permission(superuser_request)
    assert not model_admin.has_delete_permission(superuser_request)


def test_revoke_action_revokes_through_the_service(admin_client, staff_user, client):
    raw = token_create(staff_username=staff_user.username)
    token = ApiToken.objects.get()
    response = admin_client.post("/admin/core/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert client.get("/api/v1/locations/", HTTP_AUTHORIZATION=f"Token {raw}").status_code == 401


def test_a_token_made_in_the_admin_shows_its_key_once_then_only_its_prefix(admin_client, staff_user, client):
    from apps.orders.tests.factories import channel_of

    assert admin_client.get("/admin/core/apitoken/add/").status_code == 200
    channel = channel_of("web", [])
    response = admin_client.post("/admin/core/apitoken/add/", {"channel": channel.pk, "name": "shop plugin"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    raw = response.context["key"]
    token = ApiToken.objects.get()
    assert (token.channel, token.user, token.name, token.prefix) == (channel, None, "shop plugin", raw[:8])
    assert raw in response.content.decode()
    assert client.get("/api/v1/orders/", HTTP_AUTHORIZATION=f"Token {raw}").status_code == 200
    listed = admin_client.get("/admin/core/apitoken/").content.decode()
    change = admin_client.get(f"/admin/core/apitoken/{token.pk}/change/").content.decode()
    assert f"{raw[:8]}…" in listed and raw not in listed and raw not in change
    # A staff user's token carries that user.
    made = admin_client.post("/admin/core/apitoken/add/", {"user": staff_user.pk})
    assert ApiToken.objects.get(prefix=made.context["key"][:8]).user == staff_user


@pytest.mark.parametrize("body", [{}, {"name": "both"}])
def test_a_token_needs_exactly_one_owner(admin_client, staff_user, body):
    from apps.orders.tests.factories import channel_of

    if body:
        body = {"user": staff_user.pk, "channel": channel_of("web", []).pk}
    response = admin_client.post("/admin/core/apitoken/add/", body)
    assert "Choose either a staff user or a channel." in response.content.decode()
    assert not ApiToken.objects.exists()


def test_tokens_can_be_added_but_never_edited_or_deleted(superuser_request):
    model_admin = admin.site._registry[ApiToken]
    assert model_admin.has_add_permission(superuser_request)
    assert not model_admin.has_change_permission(superuser_request)
    assert not model_admin.has_delete_permission(superuser_request)


def test_staff_without_the_add_permission_cannot_make_tokens(client, staff_user):
    client.force_login(staff_user)
    assert client.get("/admin/core/apitoken/add/").status_code == 403
    assert client.post("/admin/core/apitoken/add/", {"user": staff_user.pk}).status_code == 403
    assert not ApiToken.objects.exists()
