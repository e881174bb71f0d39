"""A back office on the internet: login lockouts, invalid-token throttling, staff tokens that carry
their user's permissions, closed metrics and docs, and a clean `check --deploy` in production."""

from __future__ import annotations

import itertools
import os
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db.models import F
from rest_framework.test import APIClient

from apps.catalog.models import Item, Movement
from apps.catalog.tests.factories import ItemFactory, LocationFactory
from apps.channels.models import Channel
from apps.core.services import token_create

pytestmark = pytest.mark.django_db

BASE_DIR = Path(__file__).resolve().parents[3]
_addresses = itertools.count(1)


def fresh_address() -> str:
    """A client address no other test (nor an earlier run in this Redis window) has used."""
    n = next(_addresses)
    return f"10.{secrets.randbelow(250)}.{n // 250}.{n % 250 + 1}"


def token_client(raw: str, address: str | None = None) -> APIClient:
    client = APIClient(REMOTE_ADDR=address or fresh_address())
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


# --- 10. login lockouts ---------------------------------------------------------------------


@pytest.fixture
def planner(django_user_model):
    return django_user_model.objects.create_user(username="planner", password="right-pw-1", is_staff=True)


def log_in(client, path: str, username: str, password: str, address: str):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address)


@pytest.mark.parametrize("path", ["/staff/login/", "/admin/login/"])
def test_too_many_failures_for_a_user_lock_them_out_with_a_page(client, planner, settings, path):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):  # each from another address: the username is what is counted
        assert log_in(client, path, "planner", "wrong", fresh_address()).status_code == 200
    assert log_in(client, path, "planner", "wrong", fresh_address()).status_code == 429  # the third
    locked = log_in(client, path, "planner", "right-pw-1", fresh_address())
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Login temporarily locked" in page and "0:15:00" in page and "<html" in page
    assert "_auth_user_id" not in client.session


def test_too_many_failures_from_one_address_lock_every_username_there(client, planner, settings):
    settings.AXES_FAILURE_LIMIT = 3
    attacker = fresh_address()
    for name in ("alice", "bob", "carol"):
        log_in(client, "/staff/login/", name, "guess", attacker)
    assert log_in(client, "/staff/login/", "planner", "right-pw-1", attacker).status_code == 429
    # The same user from elsewhere is not locked by that address's failures.
    elsewhere = log_in(client, "/staff/login/", "planner", "right-pw-1", fresh_address())
    assert elsewhere.status_code == 302 and elsewhere["Location"] == "/staff/"


def test_the_lock_ends_after_the_cool_off_or_when_an_admin_lifts_it(client, planner, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        log_in(client, "/staff/login/", "planner", "wrong", fresh_address())
    assert log_in(client, "/staff/login/", "planner", "right-pw-1", fresh_address()).status_code == 429
    assert AccessAttempt.objects.filter(username="planner").exists()  # listed in the admin
    call_command("axes_reset_username", "planner", verbosity=0)
    assert log_in(client, "/staff/login/", "planner", "right-pw-1", fresh_address()).status_code == 302

    client.logout()
    for _ in range(2):
        log_in(client, "/staff/login/", "planner", "wrong", fresh_address())
    assert log_in(client, "/staff/login/", "planner", "right-pw-1", fresh_address()).status_code == 429
    # 16 minutes later (the cool-off is 15): the failures have expired.
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))
    assert log_in(client, "/staff/login/", "planner", "right-pw-1", fresh_address()).status_code == 302


# --- 10. invalid API tokens per address -------------------------------------------------------


def test_invalid_tokens_from_one_address_are_throttled_with_429(settings, staff_user):
    settings.API_TOKEN_FAILURE_LIMIT = 3
    attacker = fresh_address()
    for n in range(3):
        refused = token_client(f"guess-{n}", attacker).get("/api/v1/whoami/")
        assert refused.status_code == 401
    throttled = token_client("guess-4", attacker).get("/api/v1/whoami/")
    assert throttled.status_code == 429
    body = throttled.json()
    assert body["code"] == "throttled" and "invalid tokens" in body["detail"]
    assert 1 <= int(throttled["Retry-After"]) <= settings.API_TOKEN_FAILURE_WINDOW + 1
    # Even a right token is not tried from there until the window ends: guessing cannot succeed.
    right = token_create(staff_username=staff_user.username)
    assert token_client(right, attacker).get("/api/v1/whoami/").status_code == 429
    # Other addresses are unaffected.
    assert token_client(right).get("/api/v1/whoami/").status_code == 200
    assert token_client("guess-5").get("/api/v1/whoami/").status_code == 401


def test_valid_tokens_are_never_counted_as_failures(settings, staff_user):
    settings.API_TOKEN_FAILURE_LIMIT = 2
    address = fresh_address()
    client = token_client(token_create(staff_username=staff_user.username), address)
    assert all(client.get("/api/v1/whoami/").status_code == 200 for _ in range(5))
    assert token_client("guess", address).get("/api/v1/whoami/").status_code == 401


# --- 11. staff tokens carry their user's permissions -----------------------------------------


@pytest.fixture
def clerk(django_user_model):
    """A staff user with no permissions yet."""
    return django_user_model.objects.create_user(username="clerk", password="pw-clerk-1", is_staff=True)


def grant(user, *codenames: str) -> None:
    for name in codenames:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def test_a_staff_token_without_add_item_cannot_create_items(clerk, settings):
    settings.API_TOKEN_CACHE_SECONDS = 0  # permission changes show at once here
    api = token_client(token_create(staff_username=clerk.username))
    cap = {"sku": "CAP", "name": "Cap", "unit": "piece"}
    refused = api.post("/api/v1/items/", cap, format="json")
    assert refused.status_code == 403
    assert refused.json() == {
        "code": "permission_denied",
        "detail": "Your user lacks the permission catalog.add_item.",
        "errors": [],
    }
    assert api.get("/api/v1/items/").status_code == 403
    assert not Item.objects.filter(sku="CAP").exists()

    grant(clerk, "catalog.view_item")
    assert api.get("/api/v1/items/").status_code == 200
    assert api.post("/api/v1/items/", cap, format="json").status_code == 403
    grant(clerk, "catalog.add_item")
    assert api.post("/api/v1/items/", cap, format="json").status_code == 201
    assert api.patch("/api/v1/items/CAP/", {"name": "Cap 2"}, format="json").status_code == 403
    assert api.delete("/api/v1/items/CAP/").status_code == 403
    grant(clerk, "catalog.change_item", "catalog.delete_item")
    assert api.patch("/api/v1/items/CAP/", {"name": "Cap 2"}, format="json").status_code == 200
    assert api.delete("/api/v1/items/CAP/").status_code == 204


def test_stock_movements_need_add_movement_and_levels_need_view(clerk, settings):
    settings.API_TOKEN_CACHE_SECONDS = 0
    LocationFactory(code="WH", kind="warehouse")
    ItemFactory(sku="HOOD-M")
    api = token_client(token_create(staff_username=clerk.username))
    receipt = {"location": "WH", "item": "HOOD-M", "kind": "receipt", "quantity": 5, "idempotency_key": "k1"}
    assert api.post("/api/v1/stock/movements/", receipt, format="json").status_code == 403
    assert api.get("/api/v1/stock/levels/").status_code == 403
    assert not Movement.objects.exists()
    grant(clerk, "catalog.add_movement", "catalog.view_stocklevel")
    # Stock is booked and seen only at the user's locations (or everywhere, with the permission to).
    assert api.post("/api/v1/stock/movements/", receipt, format="json").status_code == 403
    grant(clerk, "catalog.view_all_locations")
    assert api.post("/api/v1/stock/movements/", receipt, format="json").status_code == 201
    assert api.get("/api/v1/stock/levels/").json()["results"][0]["on_hand"] == 5


def test_actions_on_one_object_need_change(clerk, settings):
    settings.API_TOKEN_CACHE_SECONDS = 0
    Channel.objects.create(code="shop1", name="Webshop")
    api = token_client(token_create(staff_username=clerk.username))
    grant(clerk, "channels.view_channel", "channels.add_channel")
    assert api.get("/api/v1/channels/shop1/").status_code == 200
    assert api.post("/api/v1/channels/shop1/sync/").status_code == 403
    grant(clerk, "channels.change_channel")
    assert api.post("/api/v1/channels/shop1/sync/").status_code == 202


def test_superusers_and_channels_keep_what_they_had(django_user_model):
    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-boss-123")
    api = token_client(token_create(staff_username=boss.username))
    assert api.post("/api/v1/items/", {"sku": "CAP", "name": "Cap", "unit": "piece"}, format="json").status_code == 201
    Channel.objects.create(code="shop1", name="Webshop")
    shop = token_client(token_create(channel_code="shop1"))
    assert shop.get("/api/v1/whoami/").json()["kind"] == "channel"
    assert shop.get("/api/v1/items/").status_code == 403


# --- 11. metrics and API docs by setting ------------------------------------------------------


def test_metrics_need_the_token_when_one_is_set(client, settings):
    settings.METRICS_TOKEN = "scrape-secret-1"
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.json()["code"] == "not_authenticated"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    allowed = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-1")
    assert allowed.status_code == 200 and b"django_http_requests" in allowed.content


def test_metrics_closed_without_token_unless_public(client, settings, staff_user):
    settings.METRICS_TOKEN = ""
    settings.METRICS_PUBLIC = True
    assert client.get("/metrics").status_code == 200
    settings.METRICS_PUBLIC = False
    assert client.get("/metrics").status_code == 401
    client.force_login(staff_user)
    assert client.get("/metrics").status_code == 200


def test_api_docs_and_schema_for_staff_only_when_not_public(client, settings, staff_user):
    settings.API_DOCS_PUBLIC = True
    assert client.get("/api/v1/schema/").status_code == 200
    settings.API_DOCS_PUBLIC = False
    for path in ("/api/v1/schema/", "/api/v1/docs/"):
        assert client.get(path).status_code == 403
    Channel.objects.create(code="shop1", name="Webshop")
    assert token_client(token_create(channel_code="shop1")).get("/api/v1/schema/").status_code == 403
    assert token_client(token_create(staff_username=staff_user.username)).get("/api/v1/schema/").status_code == 200
    client.force_login(staff_user)
    assert client.get("/api/v1/docs/").status_code == 200


# --- 11. production settings ------------------------------------------------------------------


def production_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_", "METRICS_", "API_DOCS"))}
    env.update(
        DJANGO_SETTINGS_MODULE="inventory_site.settings.production",
        SECRET_KEY=secrets.token_urlsafe(50),
        STOCKROOM_SECRETS_KEY=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="stock.example.com",
        DATABASE_URL=settings.DATABASE_URL,
        REDIS_URL=settings.REDIS_URL,
    )
    return env


def test_check_deploy_is_clean_in_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


@pytest.mark.slow
def test_production_defaults_are_closed():
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.METRICS_PUBLIC, s.API_DOCS_PUBLIC, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS > 0, "
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.DEBUG)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=BASE_DIR, env=production_env(), capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["False", "False", "True", "True", "True", "True", "False"], result.stderr
