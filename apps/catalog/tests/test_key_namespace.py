"""From the attacker's side: a client's Idempotency-Key can neither take the reference of one of
Stockroom's own documents (counts, transfers, receipts) nor another user's key."""

from __future__ import annotations

import importlib

import pytest
from django.db import connection
from rest_framework.test import APIClient

from apps.catalog.models import Location, Movement, StockCount, StockLevel
from apps.catalog.services.counts import stock_count_apply, stock_count_create, stock_count_record, stock_count_submit
from apps.catalog.services.receipts import ReceiptLineSpec, receipt_create, receipt_receive
from apps.catalog.services.reconcile import ledger_reconcile
from apps.catalog.services.transfers import TransferLineSpec, transfer_create, transfer_receive, transfer_ship
from apps.catalog.tests.factories import ItemFactory, LocationFactory, stock
from apps.core.services import token_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def shelves():
    warehouse = LocationFactory(code="W1", kind=Location.Kind.WAREHOUSE)
    store = LocationFactory(code="S1", kind=Location.Kind.STORE)
    hood = ItemFactory(sku="HOOD-M")
    stock(hood, warehouse, 10)
    return {"warehouse": warehouse, "store": store, "hood": hood}


def on_hand(item, location) -> int:
    level = StockLevel.objects.filter(item=item, location=location).first()
    return level.on_hand if level else 0


def post_movement(api: APIClient, key: str, **body):
    payload = {"location": "W1", "item": "HOOD-M", "kind": "receipt", "quantity": 1}
    payload.update(body)
    return api.post("/api/v1/stock/movements/", payload, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.fixture
def second_api(django_user_model) -> APIClient:
    """Another staff user allowed to record movements: the one repeating someone else's key."""
    django_user_model.objects.create_superuser(username="other", password="pw-other-1", email="o@example.com")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_create(staff_username='other')}")
    return client


def test_a_client_key_shaped_like_a_count_reference_does_not_block_the_count(shelves, staff_api):
    warehouse, hood = shelves["warehouse"], shelves["hood"]
    count = stock_count_create(location=warehouse, actor="lead")
    (line,) = count.lines.all()
    # The attacker guesses the count's ledger key and books a movement under it first.
    guessed = f"{count.ledger_reference}:{line.pk}"
    assert post_movement(staff_api, guessed).status_code == 201
    assert on_hand(hood, warehouse) == 11
    stock_count_record(count_id=count.pk, quantities={line.pk: 7}, actor="counter")
    stock_count_submit(count_id=count.pk, actor="counter")

    applied = stock_count_apply(count_id=count.pk, actor="lead")  # was an IntegrityError (a 500)

    # Counted 7 against 10 expected: the difference (-3) is booked over what moved since (+1).
    assert not applied.replayed and on_hand(hood, warehouse) == 8
    count.refresh_from_db()
    assert count.status == StockCount.Status.APPLIED
    assert Movement.objects.filter(reference=count.ledger_reference, idempotency_key=guessed).count() == 1
    assert Movement.objects.filter(idempotency_key=guessed).count() == 2  # the client's and the count's
    assert ledger_reconcile().ok


def test_client_keys_shaped_like_transfer_keys_do_not_block_shipping_or_receiving(shelves, staff_api):
    warehouse, store, hood = shelves["warehouse"], shelves["store"], shelves["hood"]
    transfer = transfer_create(
        source=warehouse, destination=store, lines=[TransferLineSpec(item=hood, quantity=4)], actor="clerk"
    )
    (line,) = transfer.lines.all()
    ref = transfer.ledger_reference
    for key in (f"{ref}:transfer_out:{line.pk}", f"{ref}:transfer_in:{line.pk}", f"{ref}:transfer_in:s1:{line.pk}"):
        assert post_movement(staff_api, key, location="S1", kind="adjustment", quantity=1).status_code == 201
    assert on_hand(hood, store) == 3

    transfer_ship(transfer_id=transfer.pk, actor="clerk")
    assert on_hand(hood, warehouse) == 6
    # A part receiving whose submission key the client took first is booked, not taken for a replay.
    transfer_receive(transfer_id=transfer.pk, actor="clerk", quantities={line.pk: 1}, submission="s1")
    assert on_hand(hood, store) == 4
    transfer_receive(transfer_id=transfer.pk, actor="clerk")
    assert on_hand(hood, store) == 7 and on_hand(hood, warehouse) == 6
    assert ledger_reconcile().ok


def test_a_client_key_shaped_like_a_receipt_key_does_not_swallow_the_receiving(shelves, staff_api):
    warehouse, hood = shelves["warehouse"], shelves["hood"]
    receipt = receipt_create(location=warehouse, lines=[ReceiptLineSpec(item=hood, expected=5)], actor="buyer")
    (line,) = receipt.lines.all()
    assert post_movement(staff_api, f"{receipt.ledger_reference}:form-1:{line.pk}").status_code == 201

    received = receipt_receive(receipt_id=receipt.pk, quantities={line.pk: 5}, actor="clerk", submission="form-1")

    assert not received.replayed and received.units == 5
    assert on_hand(hood, warehouse) == 10 + 1 + 5


def test_another_user_repeating_a_key_and_body_gets_their_own_movement_never_the_first(shelves, staff_api, second_api):
    first = post_movement(staff_api, "pos-0001", quantity=3)
    assert first.status_code == 201
    again = post_movement(second_api, "pos-0001", quantity=3)

    assert again.status_code == 201 and again.get("Idempotent-Replayed") is None
    assert again.json()["movement"]["id"] != first.json()["movement"]["id"]
    assert on_hand(shelves["hood"], shelves["warehouse"]) == 10 + 3 + 3
    # Each user's own retry still replays their own movement and moves nothing.
    replay = post_movement(second_api, "pos-0001", quantity=3)
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert replay.json()["movement"]["id"] == again.json()["movement"]["id"]
    assert on_hand(shelves["hood"], shelves["warehouse"]) == 16
    # Another body under one's own key is still refused, and not because of the other user's.
    reused = post_movement(second_api, "pos-0001", quantity=4)
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"


def test_the_migration_moves_existing_client_keys_to_their_sender(shelves, django_user_model):
    """Rows recorded before the namespaces: client keys go to their sender's scope, documents stay."""
    migration = importlib.import_module("apps.catalog.migrations.0011_movement_key_namespace")
    user = django_user_model.objects.create_user(username="ann", password="pw-ann-123")
    warehouse, hood = shelves["warehouse"], shelves["hood"]

    def row(kind: str, reference: str, actor: str, key: str) -> Movement:
        fields = {"kind": kind, "reference": reference, "actor": actor, "idempotency_key": key}
        return Movement.objects.create(item=hood, location=warehouse, on_hand_delta=1, **fields)

    api_row = row("receipt", "receipt:k1", "staff:ann", "k1")  # the API's actor
    admin_row = row("adjustment", "adjustment:k2", "ann", "k2")  # the admin's adjustment form
    gone_row = row("pos_sale", "pos_sale:k3", "staff:left", "k3")  # a user since deleted
    document_row = row("count", "stock_count:9", "ann", "stock_count:9:1")  # a count's own reference
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # a migration runs with no rows inserted before it
        cursor.execute(migration.CLIENT_KEYS_TO_SCOPE)
    scopes = dict(
        Movement.objects.filter(pk__in=[api_row.pk, admin_row.pk, gone_row.pk, document_row.pk]).values_list(
            "idempotency_key", "key_scope"
        )
    )
    assert scopes == {"k1": f"staff:{user.pk}", "k2": f"staff:{user.pk}", "k3": "legacy", "stock_count:9:1": ""}
    with pytest.raises(Exception, match="append-only"):  # the ledger is append-only again afterwards
        Movement.objects.filter(pk=api_row.pk).update(note="changed")
