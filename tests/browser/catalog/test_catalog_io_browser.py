"""The catalog import in the admin, in a real browser: upload, preview, errors, confirm, then the export.

Screenshots land in var/screenshots/ (catalog-import-*.png).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from apps.catalog.models import Product
from apps.channels.models import Listing, SyncWork
from apps.channels.tests.factories import channel_selling, listing, shop

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(settings.VAR_DIR) / "screenshots"


@pytest.fixture
def merchant(transactional_db, django_user_model):
    django_user_model.objects.create_superuser(username="boss", password="pw-boss-123", email="b@example.com")
    world = shop()
    web = channel_selling("web", [world.warehouse])
    listing(web, world.single, "W-HOOD")
    SyncWork.objects.all().delete()
    return world


def _login(page) -> None:
    page.goto("/admin/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw-boss-123")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _upload(page, tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    page.set_input_files("input[name=import_file]", str(path))
    page.select_option("select[name=format]", label="csv")
    page.click("input[type=submit][value=Submit]")


def test_import_listings_with_preview_errors_then_confirm(page, merchant, tmp_path):
    _login(page)
    page.goto("/admin/channels/listing/")
    page.click("a.import_link")
    page.wait_for_url("**/import/")

    _upload(page, tmp_path, "listings.csv", "channel,channel_sku,product\nweb,W-KIT,KIT\nweb,W-X,GHOST\nshop,W-Y,KIT\n")
    page.wait_for_selector("table.import-preview")
    errors = page.locator("table.import-preview").inner_text()
    assert "unknown product" in errors and "unknown channel" in errors
    assert page.locator("input[name=confirm]").count() == 0
    _shot(page, "catalog-import-errors")

    _upload(
        page, tmp_path, "listings.csv", "channel,channel_sku,product,buffer\nweb,W-KIT,KIT,2\nweb,W-HOOD,HOOD-M,1\n"
    )
    page.wait_for_selector("input[name=confirm]")
    preview = page.locator("table.import-preview").inner_text()
    assert "New" in preview and "Update" in preview and "(empty) → 1" in preview
    _shot(page, "catalog-import-preview")
    assert not Listing.objects.filter(channel_sku="W-KIT").exists()

    page.click("input[name=confirm]")
    page.wait_for_url("**/admin/channels/listing/")
    assert "Import finished: 1 new, 1 updated" in page.locator(".messagelist").inner_text()
    _shot(page, "catalog-import-done")
    assert Listing.objects.get(channel_sku="W-KIT").buffer == 2
    assert Listing.objects.get(channel_sku="W-HOOD").buffer == 1
    assert set(SyncWork.objects.values_list("listing__channel_sku", flat=True)) == {"W-KIT", "W-HOOD"}


def test_export_products_as_csv(page, merchant):
    _login(page)
    page.goto("/admin/catalog/product/")
    page.click("a.export_link")
    page.wait_for_selector("select[name=format]")
    page.select_option("select[name=format]", label="csv")
    _shot(page, "catalog-export")
    with page.expect_download() as download:
        page.click("input[type=submit]")
    text = Path(download.value.path()).read_text()
    assert text.splitlines()[0] == "code,name,kind,components,is_active"
    assert len(text.splitlines()) == 1 + Product.objects.count()
