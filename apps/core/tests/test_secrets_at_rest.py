"""Every stored secret is a Fernet token in its column: someone reading the database (a dump, a
replica, a stolen backup) finds no push secret, supplier secret or platform credential; the key
rotates without losing one; and a changed key is loud (/healthz, an incident, the admin), not silent."""

from __future__ import annotations

import importlib
import json
import time

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client

from apps.catalog.models import Incident
from apps.channels.models import Channel
from apps.channels.services.connection import channel_credentials, channel_ref
from apps.channels.tests.factories import ChannelFactory
from apps.core.secrets import SecretsUnreadable, encrypt_json
from apps.suppliers.models import FeedRun, Supplier
from apps.suppliers.services.polling import supplier_poll
from apps.suppliers.services.webhooks import webhook_signature
from apps.suppliers.tests.factories import make_supplier

pytestmark = pytest.mark.django_db

PUSH_SECRET = "push-secret-0123456789"
SUPPLIER_SECRET = "supplier-bearer-0123456789"
CREDENTIALS = {"access_token": "shpat_0123456789abcdef", "client_secret": "cs-0123456789"}
OLD, NEW, OTHER = (Fernet.generate_key().decode() for _ in range(3))


def raw(table: str, column: str, pk: int) -> str:
    """The column as stored, read with SQL (no model, no decryption)."""
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT "{column}" FROM "{table}" WHERE id = %s', [pk])
        return cursor.fetchone()[0]


def raw_set(table: str, column: str, pk: int, value: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'UPDATE "{table}" SET "{column}" = %s WHERE id = %s', [value, pk])


@pytest.fixture
def stored(settings):
    """A push-protocol channel, a Shopify channel with credentials and a REST supplier, under OLD."""
    settings.STOCKROOM_SECRETS_KEY = OLD
    web = ChannelFactory(code="web", secret=PUSH_SECRET)
    shopify = ChannelFactory(
        code="shopify", connector="shopify", settings={"shop_url": "https://x.myshopify.com"}, push_url="", secret=""
    )
    Channel.objects.filter(pk=shopify.pk).update(credentials_encrypted=encrypt_json(CREDENTIALS))
    acme = make_supplier("acme", connector="rest", settings={"url": "http://127.0.0.1:9/feed"}, secret=SUPPLIER_SECRET)
    hook = make_supplier("hook", connector="webhook", settings={}, secret=SUPPLIER_SECRET)
    return {"web": web, "shopify": shopify, "acme": acme, "hook": hook}


def everything_stored() -> str:
    """Every text column of the secret-holding tables, as SQL reads them."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(c)::text FROM channels_channel c")
        rows = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT row_to_json(s)::text FROM suppliers_supplier s")
        rows += [row[0] for row in cursor.fetchall()]
    return "\n".join(rows)


def test_the_columns_never_hold_a_plain_secret(stored):
    dump = everything_stored()
    for secret in (PUSH_SECRET, SUPPLIER_SECRET, *CREDENTIALS.values()):
        assert secret not in dump
    assert raw("channels_channel", "secret", stored["web"].pk).startswith("gAAAA")  # a Fernet token
    # The application reads them back whole.
    assert Channel.objects.get(code="web").secret == PUSH_SECRET
    assert channel_ref(Channel.objects.get(code="web")).secret == PUSH_SECRET
    assert Supplier.objects.get(code="acme").secret == SUPPLIER_SECRET


def test_a_secret_written_any_way_is_stored_encrypted(stored):
    """Through the API, a queryset update, or a save: each lands as a token."""
    staff = Client()
    from django.contrib.auth import get_user_model

    staff.force_login(get_user_model().objects.create_superuser("root", password="pw-root-1"))
    from apps.core.services import token_create

    key = token_create(staff_username="root")
    answer = staff.patch(
        "/api/v1/channels/web/",
        json.dumps({"secret": "via-the-api-0123456789"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {key}",
    )
    assert answer.status_code == 200, answer.content
    assert "via-the-api" not in json.dumps(answer.json())
    Supplier.objects.filter(code="acme").update(secret="via-an-update-0123456789")
    hook = Supplier.objects.get(code="hook")
    hook.secret = "via-a-save-0123456789"
    hook.save(update_fields=["secret"])
    dump = everything_stored()
    for secret in ("via-the-api", "via-an-update", "via-a-save"):
        assert secret not in dump
    assert Channel.objects.get(code="web").secret == "via-the-api-0123456789"
    assert Supplier.objects.get(code="acme").secret == "via-an-update-0123456789"


@pytest.mark.parametrize(
    ("module", "function", "table"),
    [
        ("apps.channels.migrations.0009_encrypt_push_secret", "encrypt_push_secrets", "channels_channel"),
        ("apps.suppliers.migrations.0004_encrypt_supplier_secret", "encrypt_supplier_secrets", "suppliers_supplier"),
    ],
)
def test_the_migration_encrypts_rows_stored_in_plain_text(stored, module, function, table):
    pk = stored["web"].pk if table == "channels_channel" else stored["acme"].pk
    raw_set(table, "secret", pk, "plain-from-before-0123")
    migration = importlib.import_module(module)
    with connection.schema_editor() as editor:
        getattr(migration, function)(None, editor)
    token = raw(table, "secret", pk)
    assert "plain-from-before" not in token and token.startswith("gAAAA")
    model = Channel if table == "channels_channel" else Supplier
    assert model.objects.get(pk=pk).secret == "plain-from-before-0123"
    with connection.schema_editor() as editor:  # a second run leaves tokens alone
        getattr(migration, function)(None, editor)
    assert raw(table, "secret", pk) == token
    with connection.schema_editor() as editor:  # migrating back gives the plain value again
        getattr(migration, function.replace("encrypt", "decrypt"))(None, editor)
    assert raw(table, "secret", pk) == "plain-from-before-0123"


def test_rotate_secrets_moves_everything_to_the_first_key(stored, settings, capsys):
    before = {
        "push": raw("channels_channel", "secret", stored["web"].pk),
        "credentials": raw("channels_channel", "credentials_encrypted", stored["shopify"].pk),
        "supplier": raw("suppliers_supplier", "secret", stored["acme"].pk),
    }
    settings.STOCKROOM_SECRETS_KEY = f"{NEW},{OLD}"
    call_command("rotate_secrets")
    out = capsys.readouterr().out
    assert "channels.channel.secret: 1 re-encrypted" in out
    assert "channels.channel.credentials_encrypted: 1 re-encrypted" in out
    assert "suppliers.supplier.secret: 2 re-encrypted" in out
    assert raw("channels_channel", "secret", stored["web"].pk) != before["push"]
    settings.STOCKROOM_SECRETS_KEY = NEW  # the old key dropped: everything still opens
    assert channel_ref(Channel.objects.get(code="web")).secret == PUSH_SECRET
    assert channel_credentials(Channel.objects.get(code="shopify")) == CREDENTIALS
    assert Supplier.objects.get(code="acme").secret == SUPPLIER_SECRET
    assert Client().get("/healthz").json()["checks"]["secrets"]["ok"]


def test_rotate_secrets_names_rows_no_key_opens_and_rotates_the_others(stored, settings, capsys):
    settings.STOCKROOM_SECRETS_KEY = OTHER
    Supplier.objects.filter(code="hook").update(secret="written-under-another-key")
    settings.STOCKROOM_SECRETS_KEY = f"{NEW},{OLD}"
    with pytest.raises(CommandError, match="1 secret"):
        call_command("rotate_secrets")
    out, err = capsys.readouterr()
    assert "supplier hook (suppliers.supplier.secret)" in err
    assert "written-under-another-key" not in out + err
    assert "suppliers.supplier.secret: 1 re-encrypted" in out
    settings.STOCKROOM_SECRETS_KEY = NEW
    assert Supplier.objects.get(code="acme").secret == SUPPLIER_SECRET


# --- a changed key without a rotation ------------------------------------------------------------


def test_a_changed_key_degrades_healthz_naming_what_cannot_be_read(stored, settings, client):
    settings.STOCKROOM_SECRETS_KEY = NEW
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "degraded"
    named = body["checks"]["secrets"]["unreadable"]
    assert named == ["channel shopify", "channel web", "supplier acme", "supplier hook"]
    assert body["checks"]["database"]["ok"]


def test_a_changed_key_opens_one_incident_per_supplier_and_the_poll_fails_with_a_reason(stored, settings):
    settings.STOCKROOM_SECRETS_KEY = NEW
    for _ in range(3):
        supplier_poll(supplier_id=stored["acme"].pk)
    runs = FeedRun.objects.filter(supplier=stored["acme"])
    assert runs.count() == 3
    assert {run.error for run in runs} == {
        "The stored secret cannot be decrypted with STOCKROOM_SECRETS_KEY; enter it again."
    }
    incidents = Incident.objects.filter(kind=Incident.Kind.UNREADABLE_SECRET)
    assert [(i.reference, i.status) for i in incidents] == [("secret:supplier acme", "open")]
    assert SUPPLIER_SECRET not in incidents.get().detail


def test_a_changed_key_refuses_a_correctly_signed_supplier_webhook_like_a_forged_one(stored, settings, client):
    settings.STOCKROOM_SECRETS_KEY = NEW
    body = json.dumps({"items": []}).encode()
    stamp = str(int(time.time()))
    answer = client.post(
        "/api/v1/suppliers/hook/webhook/",
        data=body,
        content_type="application/json",
        HTTP_X_TIMESTAMP=stamp,
        HTTP_X_SIGNATURE=webhook_signature(secret=SUPPLIER_SECRET, timestamp=stamp, body=body),
    )
    assert answer.status_code == 401 and answer.json()["code"] == "bad_signature"
    assert Incident.objects.filter(reference="secret:supplier hook", status="open").count() == 1


def test_a_changed_key_shows_unreadable_in_the_admin_instead_of_stored(stored, settings, admin_client):
    page = admin_client.get(f"/admin/channels/channel/{stored['web'].pk}/change/").content.decode()
    assert "Stored" in page and "unreadable: enter again" not in page
    settings.STOCKROOM_SECRETS_KEY = NEW
    for url in (
        f"/admin/channels/channel/{stored['web'].pk}/change/",
        f"/admin/channels/channel/{stored['shopify'].pk}/change/",
        f"/admin/suppliers/supplier/{stored['acme'].pk}/change/",
        "/admin/suppliers/supplier/",
    ):
        page = admin_client.get(url)
        assert page.status_code == 200, url
        assert "unreadable: enter again" in page.content.decode(), url
    with pytest.raises(SecretsUnreadable):
        channel_credentials(Channel.objects.get(code="shopify"))


def test_saving_a_record_whose_secret_is_unreadable_keeps_the_stored_token(stored, settings):
    token = raw("suppliers_supplier", "secret", stored["acme"].pk)
    settings.STOCKROOM_SECRETS_KEY = NEW
    supplier = Supplier.objects.get(code="acme")
    supplier.name = "Acme renamed"
    supplier.save()
    assert raw("suppliers_supplier", "secret", stored["acme"].pk) == token
    settings.STOCKROOM_SECRETS_KEY = f"{NEW},{OLD}"  # the old key back: nothing was lost
    assert Supplier.objects.get(code="acme").secret == SUPPLIER_SECRET


def test_entering_the_secrets_again_under_the_new_key_makes_healthz_ok(stored, settings, staff_api):
    settings.STOCKROOM_SECRETS_KEY = NEW
    assert staff_api.patch("/api/v1/channels/web/", {"secret": "new-push-0123456789"}, format="json").status_code == 200
    for code in ("acme", "hook"):
        answer = staff_api.patch(f"/api/v1/suppliers/{code}/", {"secret": "new-supplier-0123456789"}, format="json")
        assert answer.status_code == 200, answer.json()
    Channel.objects.filter(code="shopify").delete()  # a channel can also go rather than be entered again
    body = staff_api.get("/healthz").json()
    assert body["status"] == "ok" and body["checks"]["secrets"]["ok"]
    assert channel_ref(Channel.objects.get(code="web")).secret == "new-push-0123456789"
