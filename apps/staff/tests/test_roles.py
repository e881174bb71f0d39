"""The Merchant, Store staff and Viewer roles: what each group holds, and what each user can do with it.

Store staff of store A cannot list, open or change store B's stock work, in the back office, the
API or the staff pages; a viewer changes nothing in any admin; a merchant assigns users to stores.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.core import mail
from django.core.management.sql import emit_post_migrate_signal
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client, RequestFactory
from django.urls import NoReverseMatch, reverse

from apps.catalog.models import Adjustment, Incident, Location, Movement, Receipt, StockCount, StockLevel, Transfer
from apps.catalog.services.access import user_locations_set
from apps.catalog.services.adjustments import adjustment_record
from apps.catalog.services.counts import stock_count_create
from apps.catalog.services.receipts import ReceiptLineSpec, receipt_create
from apps.catalog.services.transfers import TransferLineSpec, transfer_create
from apps.catalog.tests.factories import ItemFactory, LocationFactory, stock
from apps.core.services import token_create
from apps.forecasting.models import ForecastSettings
from apps.staff.models import NotificationPreference
from apps.staff.roles import MERCHANT, OUR_APPS, STORE_STAFF, VIEWER
from apps.staff.services import low_stock_scan

pytestmark = pytest.mark.django_db


def perms_of(group_name: str) -> set[str]:
    group = Group.objects.get(name=group_name)
    return {f"{app}.{code}" for app, code in group.permissions.values_list("content_type__app_label", "codename")}


def all_perms(**filters) -> set[str]:
    rows = Permission.objects.filter(**filters).values_list("content_type__app_label", "codename")
    return {f"{app}.{code}" for app, code in rows}


def person(django_user_model, username: str, role: str | None, locations=()):
    user = django_user_model.objects.create_user(
        username=username, password=f"pw-{username}-1", email=f"{username}@shop.test", is_staff=True
    )
    if role:
        user.groups.add(Group.objects.get(name=role))
    user_locations_set(user=user, locations=list(locations))
    return django_user_model.objects.get(pk=user.pk)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- The groups ----------------------------------------------------------------------------------


def test_the_merchant_holds_everything_of_stockrooms_apps_and_sees_users():
    held = perms_of(MERCHANT)
    assert held == all_perms(content_type__app_label__in=OUR_APPS) | {"auth.view_user"}
    assert {"catalog.view_all_locations", "catalog.change_locationmember", "core.add_apitoken"} <= held
    assert "auth.change_user" not in held  # users' passwords and superuser status stay with superusers


def test_store_staff_read_the_catalog_and_do_stock_work_but_see_only_their_locations():
    held = perms_of(STORE_STAFF)
    work = {
        "catalog.view_item", "catalog.view_product", "catalog.view_productcomponent", "catalog.view_location",
        "catalog.view_stocklevel", "catalog.view_movement",
        "catalog.add_receipt", "catalog.change_receipt", "catalog.view_receipt",
        "catalog.add_receiptline", "catalog.change_receiptline", "catalog.delete_receiptline",
        "catalog.view_receiptline",
        "catalog.add_transfer", "catalog.change_transfer", "catalog.view_transfer",
        "catalog.add_transferline", "catalog.change_transferline", "catalog.delete_transferline",
        "catalog.view_transferline",
        "catalog.add_adjustment", "catalog.change_adjustment", "catalog.view_adjustment",
        "catalog.add_stockcount", "catalog.change_stockcount", "catalog.view_stockcount",
        "catalog.add_stockcountline", "catalog.change_stockcountline", "catalog.delete_stockcountline",
        "catalog.view_stockcountline",
    }  # fmt: skip
    assert held == work
    never = {
        "catalog.view_all_locations", "catalog.delete_receipt", "catalog.change_stocklevel", "catalog.add_movement",
        "catalog.view_incident", "catalog.change_location", "auth.view_user",
    }  # fmt: skip
    assert not never & held


def test_the_viewer_holds_every_view_permission_and_nothing_else():
    held = perms_of(VIEWER)
    assert held == all_perms(content_type__app_label__in=OUR_APPS, codename__startswith="view_")
    assert "catalog.view_all_locations" in held and "channels.view_listing" in held


def test_every_migrate_applies_the_roles_again():
    store_staff = Group.objects.get(name=STORE_STAFF)
    store_staff.permissions.remove(Permission.objects.get(codename="add_receipt"))
    store_staff.permissions.add(Permission.objects.get(codename="view_all_locations"))
    emit_post_migrate_signal(verbosity=0, interactive=False, db=connection.alias)
    held = perms_of(STORE_STAFF)
    assert "catalog.add_receipt" in held and "catalog.view_all_locations" not in held


@pytest.mark.django_db(transaction=True)
def test_the_roles_migration_is_reversible():
    executor = MigrationExecutor(connection)
    executor.migrate([("staff", "0001_initial")])
    assert not Group.objects.filter(name__in=[MERCHANT, STORE_STAFF, VIEWER]).exists()
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert set(Group.objects.values_list("name", flat=True)) >= {MERCHANT, STORE_STAFF, VIEWER}
    assert "catalog.add_receipt" in perms_of(STORE_STAFF)


# --- The world of two stores ---------------------------------------------------------------------


@pytest.fixture
def world(django_user_model):
    s1 = LocationFactory(code="S1", name="High Street", kind=Location.Kind.STORE)
    s2 = LocationFactory(code="S2", name="Harbour", kind=Location.Kind.STORE)
    w1 = LocationFactory(code="W1", name="Warehouse", kind=Location.Kind.WAREHOUSE)
    LocationFactory(code="ACME", kind=Location.Kind.SUPPLIER)
    hood, cap = ItemFactory(sku="HOOD-M"), ItemFactory(sku="CAP")
    for place, units in ((s1, 5), (s2, 7), (w1, 10)):
        stock(hood, place, units)
    docs = {}
    for place in (s1, s2):
        code = place.code
        docs[f"receipt-{code}"] = receipt_create(
            location=place, lines=[ReceiptLineSpec(hood, 4)], actor="boss", reference=f"PO-{code}"
        )
        docs[f"adjustment-{code}"] = adjustment_record(
            location=place, item=hood, quantity=-1, reason="damaged", actor="boss", idempotency_key=f"adj-{code}"
        )
        docs[f"transfer-{code}"] = transfer_create(
            source=w1, destination=place, lines=[TransferLineSpec(hood, 2)], actor="boss", reference=f"TR-{code}"
        )
        docs[f"stockcount-{code}"] = stock_count_create(location=place, actor="boss")
    return {
        "s1": s1,
        "s2": s2,
        "w1": w1,
        "hood": hood,
        "cap": cap,
        **docs,
        "alice": person(django_user_model, "alice", STORE_STAFF, [s1]),
        "bob": person(django_user_model, "bob", STORE_STAFF, [s2]),
        "vera": person(django_user_model, "vera", VIEWER),
        "mona": person(django_user_model, "mona", MERCHANT),
    }


def codes_in(result_list) -> set[str]:
    """The location codes of changelist rows (a transfer's two ends)."""
    found = set()
    for row in result_list:
        for name in ("location", "source", "destination"):
            place = getattr(row, name, None)
            if place is not None:
                found.add(place.code)
        if isinstance(row, Location):
            found.add(row.code)
    return found


# --- Viewer ---------------------------------------------------------------------------------------

# Each user's own notification settings are theirs to change, whatever their role.
OWN_SETTINGS = {NotificationPreference}
# Its admin offers "add" while no settings row exists, whatever the user's permissions; the add
# page itself is refused (ServiceAdmin.add_view, checked over HTTP below).
OFFERS_ADD_REGARDLESS = {ForecastSettings}


def test_a_viewer_can_add_change_delete_or_act_on_nothing_in_any_admin(world):
    request = RequestFactory().get("/admin/")
    request.user = world["vera"]
    checked = 0
    for model, model_admin in admin.site._registry.items():
        if model in OWN_SETTINGS:
            continue
        name = type(model_admin).__name__
        assert model in OFFERS_ADD_REGARDLESS or not model_admin.has_add_permission(request), name
        assert not model_admin.has_change_permission(request), name
        assert not model_admin.has_delete_permission(request), name
        if model_admin.has_view_permission(request):  # no list, no actions
            assert model_admin.get_actions(request) == {}, name
        checked += 1
    assert checked > 20


def test_a_viewer_reads_the_back_office_and_is_refused_every_add_page(world):
    client = logged_in(world["vera"])
    for model, _model_admin in admin.site._registry.items():
        opts = model._meta
        if model in OWN_SETTINGS:
            continue
        try:
            add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
        except NoReverseMatch:
            continue
        assert client.get(add).status_code == 403, add
        if opts.app_label in OUR_APPS:
            listing = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
            assert client.get(listing).status_code == 200, listing
    # The viewer sees every store's stock, and the buttons that would change it answer 403.
    page = client.get(reverse("admin:catalog_stocklevel_changelist"))
    assert codes_in(page.context["cl"].result_list) == {"S1", "S2", "W1"}
    receipt = world["receipt-S1"]
    assert client.post(reverse("admin:catalog_receipt_receive", args=[receipt.pk]), {}).status_code == 403
    transfer = world["transfer-S1"]
    step = reverse("admin:catalog_transfer_step", args=[transfer.pk, "ship"])
    assert client.post(step).status_code == 403
    assert Transfer.objects.get(pk=transfer.pk).status == Transfer.Status.DRAFT


def test_a_viewer_cannot_resolve_incidents_by_the_list_action(world):
    incident = Incident.objects.create(kind=Incident.Kind.OVERSELL, item=world["hood"], location=world["s1"])
    client = logged_in(world["vera"])
    client.post(reverse("admin:catalog_incident_changelist"), {"action": "resolve", "_selected_action": [incident.pk]})
    assert Incident.objects.get(pk=incident.pk).status == Incident.Status.OPEN


# --- Store staff in the back office ---------------------------------------------------------------

LISTS = {
    "stocklevel": StockLevel,
    "movement": Movement,
    "receipt": Receipt,
    "adjustment": Adjustment,
    "transfer": Transfer,
    "stockcount": StockCount,
    "location": Location,
}


@pytest.mark.parametrize("name", list(LISTS))
def test_store_staff_list_only_their_own_stores_rows(world, name):
    client = logged_in(world["alice"])
    url = reverse(f"admin:catalog_{name}_changelist") + ("?due=all" if name == "receipt" else "")
    page = client.get(url)
    assert page.status_code == 200
    rows = list(page.context["cl"].result_list)
    assert rows, name
    seen = codes_in(rows)
    assert "S2" not in seen and "S1" in seen
    if name == "transfer":
        assert seen == {"S1", "W1"}  # the warehouse's transfer to S1, seen from S1's end
    else:
        assert seen == {"S1"}
    # The location filter offers their own store only.
    for spec in page.context["cl"].filter_specs:
        if getattr(spec, "field", None) is not None and spec.field.related_model is Location:
            assert [label for _, label in spec.lookup_choices] == ["S1 (Store)"], name


def _others(world) -> dict[str, object]:
    """Store B's object of each kind."""
    s2 = world["s2"]
    return {
        "stocklevel": StockLevel.objects.get(location=s2, item=world["hood"]),
        "movement": Movement.objects.filter(location=s2).first(),
        "receipt": world["receipt-S2"],
        "adjustment": world["adjustment-S2"],
        "transfer": world["transfer-S2"],
        "stockcount": world["stockcount-S2"],
        "location": s2,
    }


@pytest.mark.parametrize("name", list(LISTS))
def test_store_staff_cannot_open_or_change_another_stores_objects(world, name):
    client = logged_in(world["alice"])
    other = _others(world)[name]
    change = reverse(f"admin:catalog_{name}_change", args=[other.pk])
    assert client.get(change).status_code == 403
    assert client.post(change, {"reference": "mine now", "note": "x"}).status_code == 403
    history = reverse(f"admin:catalog_{name}_history", args=[other.pk])
    assert client.get(history).status_code == 403
    # Their own store's object of the same kind opens.
    own = {
        "stocklevel": StockLevel.objects.get(location=world["s1"], item=world["hood"]),
        "movement": Movement.objects.filter(location=world["s1"]).first(),
        "receipt": world["receipt-S1"],
        "adjustment": world["adjustment-S1"],
        "transfer": world["transfer-S1"],
        "stockcount": world["stockcount-S1"],
        "location": world["s1"],
    }[name]
    assert client.get(reverse(f"admin:catalog_{name}_change", args=[own.pk])).status_code == 200


def test_a_missing_object_stays_missing_not_forbidden(world):
    client = logged_in(world["alice"])
    response = client.get(reverse("admin:catalog_receipt_change", args=[999999]))
    assert response.status_code == 302  # Django's "does not exist" redirect
    assert client.get(reverse("admin:catalog_receipt_receive", args=[999999])).status_code == 404


def test_store_staff_cannot_receive_another_stores_delivery(world):
    client = logged_in(world["alice"])
    receipt = world["receipt-S2"]
    line = receipt.lines.get()
    url = reverse("admin:catalog_receipt_receive", args=[receipt.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {f"line-{line.pk}": "4", "submission": "x", "receive": "1"}).status_code == 403
    assert Receipt.objects.get(pk=receipt.pk).status == Receipt.Status.EXPECTED
    assert StockLevel.objects.get(location=world["s2"], item=world["hood"]).on_hand == 6


def _location_options(page, field: str) -> list[str]:
    form = page.context["adminform"].form
    return [str(place) for place in form.fields[field].queryset]


def _receipt_body(location, item, expected: int = 3, reference: str = "PO-NEW") -> dict[str, str]:
    return {
        "location": str(location.pk),
        "supplier": "Acme",
        "reference": reference,
        "expected_on": "",
        "note": "",
        "lines-TOTAL_FORMS": "1",
        "lines-INITIAL_FORMS": "0",
        "lines-MIN_NUM_FORMS": "0",
        "lines-MAX_NUM_FORMS": "1000",
        "lines-0-item": str(item.pk),
        "lines-0-expected": str(expected),
    }


def test_store_staff_book_deliveries_at_their_store_only(world):
    client = logged_in(world["alice"])
    page = client.get(reverse("admin:catalog_receipt_add"))
    assert _location_options(page, "location") == ["S1 (Store)"]
    refused = client.post(reverse("admin:catalog_receipt_add"), _receipt_body(world["s2"], world["cap"]))
    assert refused.status_code == 200
    assert "Select a valid choice" in refused.content.decode()
    assert not Receipt.objects.filter(reference="PO-NEW").exists()
    done = client.post(reverse("admin:catalog_receipt_add"), _receipt_body(world["s1"], world["cap"]))
    assert done.status_code == 302
    receipt = Receipt.objects.get(reference="PO-NEW")
    assert receipt.location == world["s1"] and receipt.created_by == "alice"


def test_store_staff_adjust_at_their_store_only(world):
    client = logged_in(world["alice"])
    url = reverse("admin:catalog_adjustment_add")
    assert _location_options(client.get(url), "location") == ["S1 (Store)"]
    body = {"item": world["hood"].pk, "reason": "lost", "quantity": "1", "note": "", "key": "k-alice"}
    refused = client.post(url, {**body, "location": world["s2"].pk})
    assert "Select a valid choice" in refused.content.decode()
    assert client.post(url, {**body, "location": world["s1"].pk}).status_code == 302
    assert Adjustment.objects.filter(location=world["s1"], reason="lost").count() == 1
    assert not Adjustment.objects.filter(location=world["s2"], reason="lost").exists()


def test_store_staff_count_at_their_store_only(world):
    client = logged_in(world["alice"])
    assert _location_options(client.get(reverse("admin:catalog_stockcount_add")), "location") == ["S1 (Store)"]
    other = world["stockcount-S2"]
    for step in ("sheet", "download", "preview"):
        assert client.get(reverse(f"admin:catalog_stockcount_{step}", args=[other.pk])).status_code == 404, step
    assert client.post(reverse("admin:catalog_stockcount_cancel", args=[other.pk])).status_code == 404
    assert StockCount.objects.get(pk=other.pk).status == other.status
    own = world["stockcount-S1"]
    assert client.get(reverse("admin:catalog_stockcount_sheet", args=[own.pk])).status_code == 200


def _transfer_body(source, destination, item, reference: str) -> dict[str, str]:
    return {
        "source": str(source.pk),
        "destination": str(destination.pk),
        "reference": reference,
        "lines-TOTAL_FORMS": "1",
        "lines-INITIAL_FORMS": "0",
        "lines-MIN_NUM_FORMS": "0",
        "lines-MAX_NUM_FORMS": "1000",
        "lines-0-item": str(item.pk),
        "lines-0-quantity": "2",
    }


def test_store_staff_ship_from_their_store_and_receive_at_their_store(world):
    alice, bob = logged_in(world["alice"]), logged_in(world["bob"])
    add = reverse("admin:catalog_transfer_add")
    page = alice.get(add)
    assert _location_options(page, "source") == ["S1 (Store)"]
    assert _location_options(page, "destination") == ["S1 (Store)", "S2 (Store)", "W1 (Warehouse)"]
    refused = alice.post(add, _transfer_body(world["s2"], world["s1"], world["hood"], "TR-STEAL"))
    assert "Select a valid choice" in refused.content.decode()
    assert not Transfer.objects.filter(reference="TR-STEAL").exists()

    assert alice.post(add, _transfer_body(world["s1"], world["s2"], world["hood"], "TR-A2B")).status_code == 302
    transfer = Transfer.objects.get(reference="TR-A2B")
    step = lambda name: reverse("admin:catalog_transfer_step", args=[transfer.pk, name])  # noqa: E731
    # Bob sees it coming (his end) but it is Alice's to edit, ship or cancel.
    change = reverse("admin:catalog_transfer_change", args=[transfer.pk])
    seen_by_bob = bob.get(change)
    assert seen_by_bob.status_code == 200 and 'id="ship"' not in seen_by_bob.content.decode()
    assert bob.post(change, _transfer_body(world["s1"], world["s2"], world["hood"], "TR-B")).status_code == 403
    assert bob.post(step("ship")).status_code == 403 and bob.post(step("cancel")).status_code == 403
    assert 'id="ship"' in alice.get(change).content.decode()
    assert alice.post(step("ship"), {"confirm": "1"}).status_code == 302
    assert Transfer.objects.get(pk=transfer.pk).status == Transfer.Status.IN_TRANSIT
    # Only the destination receives; only the source calls back what is on the road.
    on_alices_page = alice.get(change).content.decode()
    assert 'id="receive"' not in on_alices_page and 'id="cancel-in-transit"' in on_alices_page
    assert alice.post(step("receive")).status_code == 403
    on_bobs_page = bob.get(change).content.decode()
    assert 'id="receive"' in on_bobs_page and 'id="cancel-in-transit"' not in on_bobs_page
    assert bob.get(step("cancel")).status_code == 403
    assert bob.post(step("cancel"), {"outcome": "lost"}).status_code == 403
    assert Transfer.objects.get(pk=transfer.pk).status == Transfer.Status.IN_TRANSIT
    line = transfer.lines.get()
    arrived = {"confirm": "1", "submission": "bob-1", f"line-{line.pk}": str(line.quantity)}
    assert bob.post(step("receive"), arrived).status_code == 302
    assert Transfer.objects.get(pk=transfer.pk).status == Transfer.Status.RECEIVED
    assert StockLevel.objects.get(location=world["s2"], item=world["hood"]).on_hand == 8
    # The warehouse's transfers to S1 and S2 are nobody's to ship but the merchant's.
    w1_to_s1 = world["transfer-S1"]
    assert alice.post(reverse("admin:catalog_transfer_step", args=[w1_to_s1.pk, "ship"])).status_code == 403


def test_the_item_page_shows_store_staff_their_own_stock_only(world):
    client = logged_in(world["alice"])
    page = client.get(reverse("admin:catalog_item_change", args=[world["hood"].pk]))
    levels = page.context["inline_admin_formsets"][0].formset.queryset
    assert [level.location.code for level in levels] == ["S1"]
    listed = client.get(reverse("admin:catalog_item_changelist") + "?q=HOOD-M")
    (row,) = listed.context["cl"].result_list
    assert row.on_hand_sum == 4  # S1's 5 less the damaged one; S2 and W1 do not count


# --- Store staff through the API and the staff pages ----------------------------------------------


def test_a_store_staff_token_sees_and_books_stock_at_their_store_only(world):
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_create(staff_username='alice')}")
    levels = api.get("/api/v1/stock/levels/").json()["results"]
    assert {row["location"] for row in levels} == {"S1"}
    assert {row["code"] for row in api.get("/api/v1/locations/").json()["results"]} == {"S1"}
    assert api.get("/api/v1/locations/S2/").status_code == 404
    movements = api.get("/api/v1/stock/movements/").json()["results"]
    assert movements and {row["location"] for row in movements} == {"S1"}
    # Store staff hold no add_movement: the API books through the pages' documents only.
    body = {"location": "S2", "item": "HOOD-M", "kind": "receipt", "quantity": 1}
    assert api.post("/api/v1/stock/movements/", body, format="json", HTTP_IDEMPOTENCY_KEY="k1").status_code == 403


def test_a_staff_token_limited_to_locations_cannot_book_elsewhere(world, django_user_model):
    from rest_framework.test import APIClient

    till = person(django_user_model, "till", None, [world["s1"]])
    till.user_permissions.add(*Permission.objects.filter(codename__in=["add_movement", "view_stocklevel"]))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_create(staff_username='till')}")
    sale = {"item": "HOOD-M", "kind": "pos_sale", "quantity": 1}
    refused = api.post("/api/v1/stock/movements/", {**sale, "location": "S2"}, format="json", HTTP_IDEMPOTENCY_KEY="a")
    assert refused.status_code == 403 and refused.json()["detail"] == "You do not work at S2."
    booked = api.post("/api/v1/stock/movements/", {**sale, "location": "S1"}, format="json", HTTP_IDEMPOTENCY_KEY="b")
    assert booked.status_code == 201
    assert StockLevel.objects.get(location=world["s2"], item=world["hood"]).on_hand == 6


def test_the_staff_pages_show_store_staff_their_own_store_only(world):
    Incident.objects.create(kind=Incident.Kind.OVERSELL, item=world["hood"], location=world["s1"], detail="here")
    Incident.objects.create(kind=Incident.Kind.OVERSELL, item=world["hood"], location=world["s2"], detail="there")
    client = logged_in(world["alice"])
    dashboard = client.get("/staff/", {"item": "HOOD-M"})
    assert [place.code for place in dashboard.context["locations"]] == ["S1"]
    assert dashboard.context["totals"]["on_hand"] == 4
    assert dashboard.context["incident_count"] == 1 and dashboard.context["incidents"][0].location.code == "S1"
    assert 'id="channel-quantities"' not in dashboard.content.decode()
    assert "All your locations" in dashboard.content.decode()
    # Asking for another store shows their own again, not the other's.
    elsewhere = client.get("/staff/", {"item": "HOOD-M", "location": "S2"})
    assert elsewhere.context["location"] is None and elsewhere.context["totals"]["on_hand"] == 4

    safety = client.get("/staff/safety-stock/")
    assert {row["level"].location.code for row in safety.context["rows"]} == {"S1"}
    # Another store is no choice of theirs: the list stays on their own rows.
    asked = client.get("/staff/safety-stock/", {"location": "S2"})
    assert {row["level"].location.code for row in asked.context["rows"]} == {"S1"}
    assert client.get("/staff/safety-stock/HOOD-M/S2/history/").status_code == 404
    assert client.get("/staff/safety-stock/HOOD-M/S1/history/").status_code == 200
    item_page = client.get("/staff/items/HOOD-M/")
    assert [level.location.code for level in item_page.context["levels"]] == ["S1"]

    merchant = logged_in(world["mona"]).get("/staff/", {"item": "HOOD-M"})
    assert merchant.context["totals"]["on_hand"] == 4 + 6 + 10 and merchant.context["incident_count"] == 2
    assert 'id="channel-quantities"' in merchant.content.decode()


def test_low_stock_mail_tells_store_staff_about_their_own_store_only(world):
    hood = world["hood"]
    for place in ("s1", "s2"):
        StockLevel.objects.filter(item=hood, location=world[place]).update(safety=50)
    assert low_stock_scan()["new"] == 2
    bodies = {message.to[0]: message.body for message in mail.outbox}
    assert "at S1" in bodies["alice@shop.test"] and "at S2" not in bodies["alice@shop.test"]
    assert "at S2" in bodies["bob@shop.test"] and "at S1" not in bodies["bob@shop.test"]
    assert "at S1" in bodies["mona@shop.test"] and "at S2" in bodies["mona@shop.test"]


# --- Assigning users to stores ---------------------------------------------------------------------


def test_a_merchant_assigns_store_staff_to_stores_and_changes_nothing_else(world, django_user_model):
    client = logged_in(world["mona"])
    alice = world["alice"]
    url = reverse("admin:auth_user_change", args=[alice.pk])
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    assert list(form.fields) == ["locations"]  # names, groups and status are shown, not editable
    assert [str(place) for place in form.fields["locations"].queryset] == ["S1 (Store)", "S2 (Store)", "W1 (Warehouse)"]
    response = client.post(
        url, {"locations": [world["s1"].pk, world["w1"].pk], "is_superuser": "on", "username": "boss", "_save": "1"}
    )
    assert response.status_code == 302
    alice = django_user_model.objects.get(pk=alice.pk)
    assert sorted(alice.location_memberships.values_list("location__code", flat=True)) == ["S1", "W1"]
    assert alice.username == "alice" and not alice.is_superuser
    listed = client.get(reverse("admin:auth_user_changelist")).content.decode()
    assert "S1, W1" in listed and STORE_STAFF in listed
    # Passwords and new users stay with those who may change users.
    assert client.get(reverse("admin:auth_user_password_change", args=[alice.pk])).status_code == 403
    assert client.get(reverse("admin:auth_user_add")).status_code == 403


def test_a_superuser_sets_locations_on_the_full_user_page(world, django_user_model):
    boss = django_user_model.objects.create_superuser(username="boss", password="pw-boss-123")
    client = logged_in(boss)
    bob = world["bob"]
    url = reverse("admin:auth_user_change", args=[bob.pk])
    page = client.get(url)
    form = page.context["adminform"].form
    assert {"username", "groups", "locations"} <= set(form.fields)
    assert [place.code for place in form.initial["locations"]] == ["S2"]
    body = {
        "username": "bob",
        "first_name": "Bob",
        "last_name": "",
        "email": "bob@shop.test",
        "is_active": "on",
        "is_staff": "on",
        "groups": [Group.objects.get(name=STORE_STAFF).pk],
        "locations": [world["s1"].pk, world["s2"].pk],
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "09:00:00",
        "_save": "1",
    }
    response = client.post(url, body)
    assert response.status_code == 302, response.context["adminform"].form.errors
    bob = django_user_model.objects.get(pk=bob.pk)
    assert bob.first_name == "Bob"
    assert sorted(bob.location_memberships.values_list("location__code", flat=True)) == ["S1", "S2"]


def test_a_viewer_may_not_assign_locations(world):
    client = logged_in(world["vera"])
    url = reverse("admin:auth_user_change", args=[world["alice"].pk])
    assert client.get(url).status_code == 403  # viewers do not see users at all
    assert client.post(url, {"locations": [world["s2"].pk]}).status_code == 403
    assert list(world["alice"].location_memberships.values_list("location__code", flat=True)) == ["S1"]
