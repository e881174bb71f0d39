"""The admin's import (preview, then confirm) and export of the catalog, on the same checks and services."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from openpyxl import load_workbook

from apps.catalog.models import Item, Product
from apps.channels.models import Listing, SyncWork
from apps.channels.tests.factories import channel_selling, listing, shop

pytestmark = pytest.mark.django_db

CSV_FORMAT, XLSX_FORMAT = "0", "1"
ITEM_COLUMNS = ["sku", "name", "unit", "safety_min", "safety_max", "is_active"]
LISTING_COLUMNS = ["channel", "channel_sku", "product", "coefficient", "buffer", "max_qty", "end_when", "is_active"]


@pytest.fixture
def merchant(client, django_user_model):
    user = django_user_model.objects.create_superuser(username="boss", password="pw-boss-123", email="b@example.com")
    client.force_login(user)
    return client


@pytest.fixture
def world():
    world = shop()
    web = channel_selling("web", [world.warehouse])
    listing(web, world.single, "W-HOOD")
    SyncWork.objects.all().delete()
    return world


def export(merchant, model: str, resource: str, columns: list[str], fmt: str, app: str = "catalog"):
    fields = {f"{resource.lower()}_{column}": "on" for column in columns}
    return merchant.post(reverse(f"admin:{app}_{model}_export"), {"resource": "0", "format": fmt, **fields})


def upload(merchant, model: str, data: bytes, name: str, fmt: str = CSV_FORMAT, app: str = "catalog"):
    return merchant.post(
        reverse(f"admin:{app}_{model}_import"),
        {"resource": "0", "format": fmt, "import_file": SimpleUploadedFile(name, data)},
    )


def confirm(merchant, model: str, preview, app: str = "catalog"):
    data = preview.context["confirm_form"].initial
    return merchant.post(reverse(f"admin:{app}_{model}_process_import"), data)


def test_items_import_shows_a_preview_then_writes_on_confirm(world, merchant):
    page = merchant.get(reverse("admin:catalog_item_import"))
    assert page.status_code == 200 and b"sku" in page.content

    preview = upload(
        merchant, "item", b"sku,name,unit\nMUG,Mug,piece\nCAP,Blue cap,piece\nHOOD-M,Item HOOD-M,\n", "i.csv"
    )
    assert preview.status_code == 200
    html = preview.content.decode()
    assert "Preview" in html and "New" in html and "Update" in html and "Skipped" in html
    assert "Item CAP → Blue cap" in html
    assert not Item.objects.filter(sku="MUG").exists()  # the preview wrote nothing

    done = confirm(merchant, "item", preview)
    assert done.status_code == 302 and done.url == reverse("admin:catalog_item_changelist")
    assert Item.objects.get(sku="MUG").name == "Mug"
    assert Item.objects.get(sku="CAP").name == "Blue cap"
    messages = [str(m) for m in done.wsgi_request._messages]
    assert "Import finished: 1 new, 1 updated, 0 deleted and 1 skipped items." in messages


def test_bad_rows_are_listed_with_their_numbers_and_no_confirm_is_offered(world, merchant):
    preview = upload(
        merchant, "product", b"code,name,kind,components\nP1,P,standard,1 x GHOST\nP2,P,multipack,x\n", "p.csv"
    )
    assert preview.status_code == 200
    html = preview.content.decode()
    assert "Some rows failed to validate" in html
    assert "unknown item(s) GHOST" in html and "is not “quantity x SKU”" in html
    assert "confirm_form" not in preview.context or preview.context["confirm_form"] is None
    assert not Product.objects.filter(code__in=["P1", "P2"]).exists()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("sku,name\nCAFÉ,Café\n".encode("latin-1"), "not UTF-8 text (byte 12 is 0xc9)"),
        (b'sku,name\nA,"Unfinished', "is the file cut off?"),
        (b"sku,name,unit\nA,Apple,piece\nB,Ban", "2 cells, the header has 3"),
    ],
)
def test_broken_files_are_reported_on_the_page_never_a_server_error(world, merchant, data, expected):
    preview = upload(merchant, "item", data, "items.csv")
    assert preview.status_code == 200
    assert expected in preview.content.decode()
    assert not Item.objects.filter(sku="A").exists()


def test_a_cut_off_workbook_is_reported_on_the_page(world, merchant):
    exported = export(merchant, "item", "ItemsResource", ITEM_COLUMNS, XLSX_FORMAT)
    preview = upload(merchant, "item", exported.content[:300], "items.xlsx", fmt=XLSX_FORMAT)
    assert preview.status_code == 200
    assert "errorlist" in preview.content.decode()


def test_listings_round_trip_through_the_admin_as_xlsx_changes_nothing(world, merchant):
    exported = export(merchant, "listing", "ListingsResource", LISTING_COLUMNS, XLSX_FORMAT, app="channels")
    assert exported.status_code == 200
    sheet = load_workbook(io.BytesIO(exported.content)).active
    assert [cell.value for cell in sheet[1]][:3] == ["channel", "channel_sku", "product"]
    before = list(Listing.objects.values_list())

    preview = upload(merchant, "listing", exported.content, "listings.xlsx", fmt=XLSX_FORMAT, app="channels")
    assert "Skipped" in preview.content.decode()
    done = confirm(merchant, "listing", preview, app="channels")
    assert done.status_code == 302
    assert list(Listing.objects.values_list()) == before
    assert SyncWork.objects.count() == 0


def test_a_new_listing_from_the_admin_queues_its_sync(world, merchant):
    preview = upload(merchant, "listing", b"channel,channel_sku,product\nweb,W-KIT,KIT\n", "l.csv", app="channels")
    confirm(merchant, "listing", preview, app="channels")
    assert list(SyncWork.objects.values_list("listing__channel_sku", flat=True)) == ["W-KIT"]


def test_a_viewer_can_export_but_not_import(world, client, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user(username="viewer", password="pw-viewer-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_item"))
    client.force_login(viewer)
    assert client.get(reverse("admin:catalog_item_import")).status_code == 403
    exported = export(client, "item", "ItemsResource", ITEM_COLUMNS, CSV_FORMAT)
    assert exported.status_code == 200 and exported.content.decode().startswith("sku,name,unit")
