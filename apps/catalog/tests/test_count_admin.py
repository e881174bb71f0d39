"""The stock count pages of the admin, through Django's test client (the browser test walks them too)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.catalog.models import Location, Movement, StockCount
from apps.catalog.services.counts import stock_count_create, stock_count_record, stock_count_submit
from apps.catalog.tests.factories import ItemFactory
from apps.catalog.tests.test_counts import make_world
from apps.orders.services import LineRequest, order_reserve

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return make_world()


def sheet_post(count, quantities: dict[str, int | None], *, button: str = "_save") -> dict[str, str]:
    """The sheet form as a browser sends it: one row per line of its first page."""
    lines = list(count.lines.select_related("item").order_by("id"))
    data = {"lines-TOTAL_FORMS": str(len(lines)), "lines-INITIAL_FORMS": str(len(lines)), button: "1"}
    for n, line in enumerate(lines):
        data[f"lines-{n}-line"] = str(line.pk)
        value = quantities.get(line.item.sku, line.counted)
        data[f"lines-{n}-counted"] = "" if value is None else str(value)
    return data


def test_a_count_is_made_on_the_add_page_and_opens_on_its_sheet(admin_client, world):
    Location.objects.create(code="SUP", name="Feed", kind=Location.Kind.SUPPLIER)
    page = admin_client.get("/admin/catalog/stockcount/add/").content.decode()
    assert "W1" in page and "SUP" not in page  # counts happen at stores and warehouses
    response = admin_client.post(
        "/admin/catalog/stockcount/add/",
        {"location": world["warehouse"].pk, "sku_prefix": "HOOD", "blind": "on", "note": "aisle 3"},
    )
    count = StockCount.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/admin/catalog/stockcount/{count.pk}/sheet/"
    assert (count.created_by, count.blind, count.scope, count.note) == (
        "admin",
        True,
        "all items stocked here, SKUs starting with HOOD",
        "aisle 3",
    )
    sheet = admin_client.get(response["Location"]).content.decode()
    assert 'data-sku="HOOD-M"' in sheet and 'data-sku="SCARF"' not in sheet
    assert 'class="expected"' not in sheet and "Blind count" in sheet  # hidden while counting
    preview = admin_client.get(f"/admin/catalog/stockcount/{count.pk}/preview/")
    assert preview.status_code == 302  # a blind count shows nothing expected before it is submitted
    listed = admin_client.get("/admin/catalog/stockcount/").content.decode()
    assert "0 of 1" in listed and "count-link" in listed


def test_a_refused_sheet_comes_back_as_typed_with_the_reason(admin_client, world):
    """No item matches: the form keeps the chosen location and the prefix, and says why."""
    response = admin_client.post(
        "/admin/catalog/stockcount/add/",
        {"location": world["warehouse"].pk, "sku_prefix": "NOPE", "note": "aisle 9"},
    )
    assert response.status_code == 200 and not StockCount.objects.exists()
    form = response.context_data["adminform"].form
    assert form.data["location"] == str(world["warehouse"].pk) and form.data["sku_prefix"] == "NOPE"
    page = response.content.decode()
    assert f'<option value="{world["warehouse"].pk}" selected>' in page
    assert "No item to count at W1" in page and 'value="NOPE"' in page


def test_quantities_typed_on_the_sheet_are_previewed_then_applied(admin_client, world):
    order_reserve(channel=world["web"], external_id="o-1", lines=[LineRequest("WEB-SCARF", 3)])
    count = stock_count_create(location=world["warehouse"], actor="lead")
    url = f"/admin/catalog/stockcount/{count.pk}/sheet/"
    bad = admin_client.post(url, sheet_post(count, {"HOOD-M": -1}))
    assert bad.status_code == 200 and count.lines.filter(counted__isnull=False).count() == 0
    admin_client.post(url, sheet_post(count, {"HOOD-M": 8}))
    response = admin_client.post(url, sheet_post(count, {"SCARF": 2, "CAP-RED": 5}, button="_submit"))
    assert response["Location"] == f"/admin/catalog/stockcount/{count.pk}/preview/"
    count.refresh_from_db()
    assert (count.status, count.counted_by) == (StockCount.Status.COUNTED, "admin")

    preview = admin_client.get(response["Location"]).content.decode()
    assert 'data-sku="HOOD-M"' in preview and 'data-sku="CAP-RED"' not in preview  # only what books something
    assert 'name="confirm"' in preview and "1 line leaves less on hand than is reserved" in preview
    refused = admin_client.post(response["Location"], {"apply": "1"})
    assert "Confirm them to apply" in refused.content.decode() and not Movement.objects.filter(kind="count").exists()
    scarf_line = count.lines.get(item__sku="SCARF")
    done = admin_client.post(response["Location"], {"apply": "1", "confirm": [str(scarf_line.pk)]})
    assert done["Location"] == f"/admin/catalog/stockcount/{count.pk}/preview/"  # the count as applied
    assert sorted(Movement.objects.filter(kind="count").values_list("item__sku", "on_hand_delta")) == [
        ("HOOD-M", -2),
        ("SCARF", -2),
    ]
    page = admin_client.get(done["Location"]).content.decode()
    assert f"?reference__exact=stock_count:{count.pk}" in page
    again = admin_client.post(response["Location"], {"apply": "1", "confirm": [str(scarf_line.pk)]})
    assert again.status_code == 302 and Movement.objects.filter(kind="count").count() == 2


def test_a_count_file_with_problems_shows_each_row_and_records_nothing(admin_client, world):
    count = stock_count_create(location=world["warehouse"], actor="lead")
    url = f"/admin/catalog/stockcount/{count.pk}/upload/"
    file = SimpleUploadedFile("count.csv", b"sku,counted\nHOOD-M,7\nNOPE,1\nSCARF,-2\n", content_type="text/csv")
    page = admin_client.post(url, {"file": file}).content.decode()
    assert 'data-row="3"' in page and "Unknown SKU NOPE." in page and "Counted -2 is negative." in page
    assert not count.lines.filter(counted__isnull=False).exists()
    good = SimpleUploadedFile("count.csv", b"sku,counted\nHOOD-M,7\nSCARF,4\n", content_type="text/csv")
    response = admin_client.post(url, {"file": good})
    assert response.status_code == 302
    assert dict(count.lines.values_list("item__sku", "counted")) == {"CAP-RED": None, "HOOD-M": 7, "SCARF": 4}
    # The sheet as a file, to count into and upload back (no expected column on a blind count).
    csv_text = admin_client.get(f"/admin/catalog/stockcount/{count.pk}/download/").content.decode()
    assert csv_text.splitlines()[:2] == ["sku,name,expected,reserved,counted", "CAP-RED,Item CAP-RED,5,0,"]


def test_someone_who_may_only_look_cannot_count(client, django_user_model, world):
    viewer = django_user_model.objects.create_user(username="viewer", password="pw-viewer-1", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_stockcount", "view_all_locations"]))
    client.force_login(viewer)
    count = stock_count_create(location=world["warehouse"], actor="lead")
    stock_count_record(count_id=count.pk, quantities={count.lines.first().pk: 1}, actor="lead")
    stock_count_submit(count_id=count.pk, actor="lead")
    assert client.get(f"/admin/catalog/stockcount/{count.pk}/sheet/").status_code == 200
    assert 'id="apply"' not in client.get(f"/admin/catalog/stockcount/{count.pk}/preview/").content.decode()
    assert client.post(f"/admin/catalog/stockcount/{count.pk}/preview/", {"apply": "1"}).status_code == 403
    assert client.post(f"/admin/catalog/stockcount/{count.pk}/cancel/").status_code == 403
    assert StockCount.objects.get(pk=count.pk).status == StockCount.Status.COUNTED


def test_the_items_to_count_are_chosen_by_typing_part_of_their_name(admin_client, world):
    found = admin_client.get(
        "/admin/autocomplete/",
        {"app_label": "catalog", "model_name": "stockcountline", "field_name": "item", "term": "SCAR"},
    ).json()
    assert [row["text"] for row in found["results"]] == [str(world["scarf"])]
    admin_client.post(
        "/admin/catalog/stockcount/add/",
        {"location": world["store"].pk, "items": [world["scarf"].pk, world["hood"].pk]},
    )
    count = StockCount.objects.get()
    assert list(count.lines.values_list("item__sku", "expected")) == [("HOOD-M", 3), ("SCARF", 0)]


def test_items_with_no_stock_at_the_location_are_added_on_the_sheet(admin_client, world):
    beanie = ItemFactory(sku="BEANIE", name="Beanie, grey")
    empty = admin_client.post(
        "/admin/catalog/stockcount/add/", {"location": world["store"].pk, "search": "BEANIE"}, follow=True
    )
    assert "To count items not stocked here yet, choose them under Items." in empty.content.decode()
    count = stock_count_create(location=world["store"], actor="lead")
    sheet = admin_client.get(f"/admin/catalog/stockcount/{count.pk}/sheet/").content.decode()
    assert 'id="add-items-form"' in sheet and "admin/js/autocomplete.js" in sheet
    found = admin_client.get(
        "/admin/autocomplete/",
        {"app_label": "catalog", "model_name": "stockcountline", "field_name": "item", "term": "beanie"},
    ).json()
    assert [row["id"] for row in found["results"]] == [str(beanie.pk)]

    response = admin_client.post(f"/admin/catalog/stockcount/{count.pk}/add/", {"add_items": [beanie.pk]})
    assert response.status_code == 302
    sheet = admin_client.get(response["Location"]).content.decode()
    assert 'data-sku="BEANIE"' in sheet and "Added 1 line(s) to count: BEANIE." in sheet
    beanie_line = count.lines.get(item=beanie)
    assert beanie_line.expected == 0
    # A file may also add them: the scarf has no level at the store either.
    file = SimpleUploadedFile("count.csv", b"sku,counted\nSCARF,2\nBEANIE,9\n", content_type="text/csv")
    refused = admin_client.post(f"/admin/catalog/stockcount/{count.pk}/upload/", {"file": file}).content.decode()
    assert "SCARF is not on this count sheet." in refused
    file.seek(0)
    admin_client.post(f"/admin/catalog/stockcount/{count.pk}/upload/", {"file": file, "add_missing": "on"})
    assert dict(count.lines.values_list("item__sku", "counted")) == {"BEANIE": 9, "HOOD-M": None, "SCARF": 2}
    stock_count_submit(count_id=count.pk, actor="lead")
    admin_client.post(f"/admin/catalog/stockcount/{count.pk}/preview/", {"apply": "1"})
    assert sorted(
        Movement.objects.filter(reference=f"stock_count:{count.pk}").values_list("item__sku", "on_hand_delta")
    ) == [("BEANIE", 9), ("SCARF", 2)]


def test_a_viewer_cannot_add_items_to_a_sheet(client, django_user_model, world):
    viewer = django_user_model.objects.create_user(username="viewer", password="pw-viewer-1", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_stockcount", "view_all_locations"]))
    client.force_login(viewer)
    count = stock_count_create(location=world["store"], actor="lead")
    assert 'id="add-items-form"' not in client.get(f"/admin/catalog/stockcount/{count.pk}/sheet/").content.decode()
    added = client.post(f"/admin/catalog/stockcount/{count.pk}/add/", {"add_items": [world["scarf"].pk]})
    assert added.status_code == 403
    assert list(count.lines.values_list("item__sku", flat=True)) == ["HOOD-M"]
