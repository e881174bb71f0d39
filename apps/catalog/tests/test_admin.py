"""The back office renders with the demo data and does what a merchant expects of it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.catalog.models import Incident, Item, Location, Movement, Product, StockLevel
from apps.catalog.services.incidents import incident_open

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(db):
    from django.core.management import call_command

    call_command("loaddata", "demo_catalog", verbosity=0)


@pytest.fixture
def merchant(client, django_user_model):
    user = django_user_model.objects.create_superuser(username="boss", password="pw-boss-123", email="b@example.com")
    client.force_login(user)
    return client


@pytest.mark.parametrize("model", [Location, Item, Product, StockLevel, Movement, Incident])
def test_changelists_and_change_views_render(demo, merchant, model, django_assert_max_num_queries):
    if model is Incident:
        incident_open(kind=Incident.Kind.OVERSELL, item_id=Item.objects.first().pk, shortfall=2, detail="KIT oversold")
    opts = model._meta
    with django_assert_max_num_queries(15):  # no N+1: the count does not grow with the rows
        response = merchant.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert response.status_code == 200
    obj = model.objects.first()
    response = merchant.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
    assert response.status_code == 200


def test_levels_show_atp_and_are_read_only(demo, merchant):
    level = StockLevel.objects.select_related("item", "location").get(item__sku="HOOD-M", location__code="WH")
    StockLevel.objects.filter(pk=level.pk).update(safety=5, reserved=3)
    page = merchant.get(reverse("admin:catalog_stocklevel_changelist") + "?q=HOOD-M").content.decode()
    assert '<td class="field-atp_display">52 pcs</td>' in page  # 60 on hand - 3 reserved - 5 safety
    change = merchant.get(reverse("admin:catalog_stocklevel_change", args=[level.pk])).content.decode()
    assert 'name="on_hand"' not in change
    assert merchant.get(reverse("admin:catalog_stocklevel_add")).status_code == 403


def test_item_page_lists_levels_with_atp(demo, merchant):
    item = Item.objects.get(sku="HOOD-S")
    page = merchant.get(reverse("admin:catalog_item_change", args=[item.pk])).content.decode()
    assert "Stock by location" in page and "ATP" in page


def test_ledger_cannot_be_edited_from_the_admin(demo, merchant):
    movement = Movement.objects.first()
    assert merchant.get(reverse("admin:catalog_movement_add")).status_code == 403
    response = merchant.post(reverse("admin:catalog_movement_change", args=[movement.pk]), {"on_hand_delta": 999})
    assert response.status_code == 403
    assert merchant.get(reverse("admin:catalog_movement_delete", args=[movement.pk])).status_code == 403
    movement.refresh_from_db()
    assert movement.on_hand_delta != 999


def test_incident_queue_shows_open_first_and_resolves(demo, merchant):
    item = Item.objects.get(sku="CAP")
    done = incident_open(kind=Incident.Kind.OVERSELL, item_id=item.pk, shortfall=1, detail="old one")
    Incident.objects.filter(pk=done.pk).update(status=Incident.Status.RESOLVED)
    open_one = incident_open(kind=Incident.Kind.POS_INTO_RESERVED, item_id=item.pk, shortfall=2, detail="store sold it")
    queue = merchant.get(reverse("admin:catalog_incident_changelist")).content.decode()
    assert "store sold it" in queue and "old one" not in queue
    everything = merchant.get(reverse("admin:catalog_incident_changelist") + "?status=all").content.decode()
    assert "old one" in everything
    response = merchant.post(
        reverse("admin:catalog_incident_changelist"),
        {"action": "resolve", "_selected_action": [open_one.pk]},
        follow=True,
    )
    assert response.status_code == 200
    open_one.refresh_from_db()
    assert open_one.status == Incident.Status.RESOLVED and open_one.resolved_by == "boss"


def test_incident_resolved_with_a_note_from_its_page(demo, merchant):
    incident = incident_open(kind=Incident.Kind.OVERSELL, item_id=Item.objects.first().pk, shortfall=1)
    url = reverse("admin:catalog_incident_change", args=[incident.pk])
    response = merchant.post(url, {"resolution_note": "Customer refunded"}, follow=True)
    assert response.status_code == 200
    incident.refresh_from_db()
    assert incident.status == Incident.Status.RESOLVED and incident.resolution_note == "Customer refunded"


def test_reconcile_action_reports_drift(demo, merchant):
    StockLevel.objects.filter(item__sku="CAP", location__code="WH").update(on_hand=99)
    response = merchant.post(
        reverse("admin:catalog_stocklevel_changelist"),
        {"action": "reconcile_everything", "_selected_action": [StockLevel.objects.first().pk]},
        follow=True,
    )
    assert "1 drifting" in response.content.decode()
    assert Incident.objects.filter(kind=Incident.Kind.LEDGER_DRIFT, status="open").count() == 1


def test_product_make_up_rules_hold_in_the_admin(demo, merchant):
    product = Product.objects.get(code="HOOD-M")
    component = product.components.get()
    url = reverse("admin:catalog_product_change", args=[product.pk])
    form = {
        "code": "HOOD-M",
        "name": "Hoodie M",
        "kind": "standard",
        "is_active": "on",
        "components-TOTAL_FORMS": "1",
        "components-INITIAL_FORMS": "1",
        "components-MIN_NUM_FORMS": "0",
        "components-MAX_NUM_FORMS": "1000",
        "components-0-id": component.pk,
        "components-0-product": product.pk,
        "components-0-item": component.item_id,
        "components-0-quantity": "3",
    }
    response = merchant.post(url, form)
    assert response.status_code == 200 and "exactly one item with quantity 1" in response.content.decode()
    component.refresh_from_db()
    assert component.quantity == 1
    form["kind"] = "multipack"
    assert merchant.post(url, form).status_code == 302
    assert [(c.item_id, c.quantity) for c in product.components.all()] == [(component.item_id, 3)]


def test_locations_are_added_changed_and_deleted_through_the_catalog_services(merchant):
    from apps.core.testing import admin_form

    add = reverse("admin:catalog_location_add")
    form = {**admin_form(merchant, add), "code": "s9", "name": "Store 9", "kind": "store"}
    assert merchant.post(add, form).status_code == 302
    location = Location.objects.get(code="s9")
    url = reverse("admin:catalog_location_change", args=[location.pk])
    form = admin_form(merchant, url)
    assert "code" not in form and "allow_negative" not in form and "stock_valid_until" not in form
    assert merchant.post(url, {**form, "name": "Store nine"}).status_code == 302
    assert Location.objects.get(pk=location.pk).name == "Store nine"
    delete = reverse("admin:catalog_location_delete", args=[location.pk])
    assert merchant.post(delete, {"post": "yes"}).status_code == 302
    assert not Location.objects.filter(pk=location.pk).exists()


def test_items_are_added_changed_and_deleted_through_the_catalog_services(merchant):
    from apps.core.testing import admin_form

    add = reverse("admin:catalog_item_add")
    form = {**admin_form(merchant, add), "sku": "SOCK", "name": "Sock", "unit": "piece", "safety_min": "2"}
    assert merchant.post(add, form).status_code == 302
    item = Item.objects.get(sku="SOCK")
    assert item.safety_min == 2
    url = reverse("admin:catalog_item_change", args=[item.pk])
    assert merchant.post(url, {**admin_form(merchant, url), "safety_min": "4"}).status_code == 302
    assert Item.objects.get(pk=item.pk).safety_min == 4
    assert merchant.post(reverse("admin:catalog_item_delete", args=[item.pk]), {"post": "yes"}).status_code == 302
    assert not Item.objects.filter(sku="SOCK").exists()


def test_an_item_with_a_ledger_cannot_be_deleted_from_the_admin(demo, merchant):
    item = Item.objects.get(sku="HOOD-M")
    response = merchant.post(reverse("admin:catalog_item_delete", args=[item.pk]), {"post": "yes"})
    assert response.status_code == 200 and "Cannot delete" in response.content.decode()
    assert Item.objects.filter(pk=item.pk).exists()


def test_a_product_is_added_with_its_make_up_in_one_service_call(demo, merchant):
    from apps.core.testing import admin_form

    hoodie, cap = Item.objects.get(sku="HOOD-M"), Item.objects.get(sku="CAP")
    add = reverse("admin:catalog_product_add")
    form = admin_form(merchant, add)
    form.update({
        "code": "DUO", "name": "Hoodie and cap", "kind": "bundle", "is_active": "on",
        "components-TOTAL_FORMS": "2",
        "components-0-item": str(hoodie.pk), "components-0-quantity": "1",
        "components-1-item": str(cap.pk), "components-1-quantity": "1",
    })  # fmt: skip
    response = merchant.post(add, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    product = Product.objects.get(code="DUO")
    assert sorted((c.item.sku, c.quantity) for c in product.components.select_related("item")) == [
        ("CAP", 1),
        ("HOOD-M", 1),
    ]
    delete = reverse("admin:catalog_product_delete", args=[product.pk])
    assert merchant.post(delete, {"post": "yes"}).status_code == 302
    assert not Product.objects.filter(code="DUO").exists()
