"""`import_feed` on the command line, and the merchant's admin pages for suppliers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from apps.core.testing import database_url
from apps.suppliers.models import FeedRun, Supplier, SupplierProduct
from apps.suppliers.services.ingest import feed_ingest
from apps.suppliers.tests.factories import csv_feed, make_mapping, make_supplier, now_iso

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.django_db
def test_import_feed_prints_the_summary(tmp_path, capsys):
    supplier = make_supplier("cmd")
    make_mapping(supplier, "C1")
    path = tmp_path / "feed.csv"
    path.write_bytes(csv_feed([("C1", 4, now_iso()), ("C1", -1, now_iso()), ("C2", 1, now_iso())]))
    call_command("import_feed", "--supplier", "cmd", str(path), "--no-progress")
    out = capsys.readouterr().out
    assert "succeeded: read 3, accepted 1, changed 1, quarantined 2" in out
    assert "negative quantity" in out and "unmapped" in out


@pytest.mark.django_db
def test_import_feed_exits_non_zero_when_refused(tmp_path):
    supplier = make_supplier("cmd2")
    make_mapping(supplier, "C1")
    path = tmp_path / "bad.csv"
    path.write_bytes(csv_feed([("C1", "x", now_iso()), ("C1", -2, now_iso())]))
    with pytest.raises(SystemExit) as exit_info:
        call_command("import_feed", "--supplier", "cmd2", str(path), "--no-progress")
    assert exit_info.value.code == 2
    assert FeedRun.objects.get(supplier=supplier).status == FeedRun.Status.REFUSED


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_import_feed_process_shows_a_progress_bar_and_exit_code(tmp_path):
    from django.db import connection

    make_supplier("cmd3")
    path = tmp_path / "bad.csv"
    path.write_bytes(b"supplier_sku;quantity;updated_at\nX;-1;2024-01-01\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "inventory_site.settings.test",
        "DATABASE_URL": database_url(connection.settings_dict),
        "REDIS_URL": __import__("django.conf").conf.settings.REDIS_URL,
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "import_feed", "--supplier", "cmd3", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "refused" in done.stdout
    assert "ingesting" in done.stderr  # the tqdm bar
    missing = subprocess.run(
        [sys.executable, "manage.py", "import_feed", "--supplier", "nope", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode != 0 and "No supplier" in missing.stderr


@pytest.fixture
def admin_client_logged_in(client, django_user_model):
    admin = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-boss-123")
    client.force_login(admin)
    return client


@pytest.mark.django_db
def test_admin_shows_health_and_masks_the_secret(admin_client_logged_in):
    make_supplier("adm", connector="webhook", settings={}, secret="very-secret-signing-key")
    listing = admin_client_logged_in.get("/admin/suppliers/supplier/")
    assert listing.status_code == 200
    page = admin_client_logged_in.get(f"/admin/suppliers/supplier/{Supplier.objects.get(code='adm').pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "very-secret-signing-key" not in html and "very-secret" not in listing.content.decode()
    assert "Breaker state" in html and "Failures in row" in html


@pytest.mark.django_db
def test_admin_edit_keeps_secret_when_blank_and_create_through_service(admin_client_logged_in):
    supplier = make_supplier("adm2", connector="webhook", settings={}, secret="keep-this-secret-1")
    form = {
        "code": "adm2",
        "name": "Renamed",
        "connector": "webhook",
        "settings": "{}",
        "new_secret": "",
        "trust_factor": "0.7",
        "cap": "",
        "max_age_minutes": "60",
        "poll_interval_s": "300",
        "priority": "10",
        "is_active": "on",
    }
    response = admin_client_logged_in.post(f"/admin/suppliers/supplier/{supplier.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    supplier.refresh_from_db()
    assert supplier.secret == "keep-this-secret-1" and supplier.name == "Renamed"
    assert supplier.location.name == "Renamed"
    created = admin_client_logged_in.post(
        "/admin/suppliers/supplier/add/", dict(form, code="adm3", connector="folder", settings='{"path": "/x"}')
    )
    assert created.status_code == 200 and "inside the drop root" in created.content.decode()  # outside: refused
    created = admin_client_logged_in.post(
        "/admin/suppliers/supplier/add/", dict(form, code="adm3", connector="folder", settings='{"path": "adm3"}')
    )
    assert created.status_code == 302
    assert Supplier.objects.get(code="adm3").location.code == "adm3"


@pytest.mark.django_db
def test_admin_feed_run_shows_quarantined_rows_and_confirm_action(admin_client_logged_in, on_hand):
    supplier = make_supplier("adm4")
    mapping = make_mapping(supplier, "M1")
    make_mapping(supplier, "M2")
    feed_ingest(supplier=supplier, raw=csv_feed([("M1", 2, now_iso()), ("M2", 3, now_iso()), ("EARLIER", 1, "never")]))
    run = feed_ingest(
        supplier=supplier, raw=csv_feed([("M1", 2, now_iso()), ("M2", 3, now_iso()), ("M3", -1, now_iso())])
    )
    page = admin_client_logged_in.get(f"/admin/suppliers/feedrun/{run.pk}/change/")
    assert page.status_code == 200 and "negative quantity" in page.content.decode()
    assert "EARLIER" not in page.content.decode()  # only this run's quarantined rows
    assert re.search(r'id="quarantined-heading"[^>]*>\s*Quarantined rows\s*</h2>', page.content.decode())
    SupplierProduct.objects.filter(pk=mapping.pk).update(status="suspect")
    filtered = admin_client_logged_in.get("/admin/suppliers/supplierproduct/?status__exact=suspect")
    assert filtered.status_code == 200 and "M1" in filtered.content.decode()
    response = admin_client_logged_in.post(
        "/admin/suppliers/supplierproduct/",
        {"action": "confirm_mapping", "_selected_action": [mapping.pk]},
    )
    assert response.status_code == 302
    mapping.refresh_from_db()
    assert mapping.status == "active"
    assert on_hand(mapping.item, supplier.location) == 2


@pytest.mark.django_db
def test_import_feed_a_row_wider_than_the_header_is_quarantined_and_shifts_nothing(tmp_path, capsys, on_hand):
    """The issue's file: C-1's line carries C-2's fields too. Nothing shifts, C-1 and C-3 keep their stock."""
    supplier = make_supplier("wide")
    one, two, three = (make_mapping(supplier, sku) for sku in ("C-1", "C-2", "C-3"))
    ts = now_iso()
    path = tmp_path / "feed.csv"
    path.write_bytes(csv_feed([("C-1", 4, ts), ("C-2", 6, ts), ("C-3", 8, ts)]))
    call_command("import_feed", "--supplier", "wide", str(path), "--no-progress")
    path.write_bytes(f"supplier_sku,quantity,updated_at\nC-1,5,{ts},C-2,777,{ts}\nC-3,7,{ts}\n".encode())
    call_command("import_feed", "--supplier", "wide", str(path), "--no-progress")
    out = capsys.readouterr().out
    assert "succeeded: read 2, accepted 1, changed 1, quarantined 1" in out
    assert "row 1 'C-1': wrong number of fields: 6 where the header has 3" in out
    assert [on_hand(m.item, supplier.location) for m in (one, two, three)] == [4, 6, 7]
    # C-1 and C-2 are named only in the quarantined line: neither changed nor vanished.
    statuses = dict(SupplierProduct.objects.filter(supplier=supplier).values_list("supplier_sku", "status"))
    assert statuses == {"C-1": "active", "C-2": "active", "C-3": "active"}


@pytest.mark.django_db
def test_import_feed_over_the_byte_limit_is_refused_before_reading(tmp_path, capsys, settings):
    settings.FEED_MAX_BYTES = 1000
    supplier = make_supplier("big")
    make_mapping(supplier, "B1")
    path = tmp_path / "big.csv"
    path.write_bytes(csv_feed([("B1", 1, now_iso())] * 100))
    with pytest.raises(SystemExit) as exit_info:
        call_command("import_feed", "--supplier", "big", str(path), "--no-progress")
    assert exit_info.value.code == 2
    run = FeedRun.objects.get(supplier=supplier)
    assert run.status == FeedRun.Status.REFUSED and "over the 1000-byte limit" in run.error
    assert "reason:" in capsys.readouterr().out


@pytest.mark.django_db
def test_admin_mapping_edit_and_delete_move_the_supplier_stock(admin_client_logged_in, on_hand):
    from apps.core.testing import admin_form

    supplier = make_supplier("adm5")
    mapping = make_mapping(supplier, "M1")
    feed_ingest(supplier=supplier, raw=csv_feed([("M1", 4, now_iso())]))
    assert on_hand(mapping.item, supplier.location) == 4
    url = f"/admin/suppliers/supplierproduct/{mapping.pk}/change/"
    response = admin_client_logged_in.post(url, {**admin_form(admin_client_logged_in, url), "units_per_pack": "3"})
    assert response.status_code == 302, response.content.decode()[:3000]
    assert on_hand(mapping.item, supplier.location) == 12  # 4 packs of 3, at once
    delete = f"/admin/suppliers/supplierproduct/{mapping.pk}/delete/"
    assert admin_client_logged_in.post(delete, {"post": "yes"}).status_code == 302
    assert not SupplierProduct.objects.filter(pk=mapping.pk).exists()
    assert on_hand(mapping.item, supplier.location) == 0


@pytest.mark.django_db
def test_admin_supplier_delete_retires_it_through_the_service(admin_client_logged_in):
    supplier = make_supplier("adm6")
    location = supplier.location
    response = admin_client_logged_in.post(f"/admin/suppliers/supplier/{supplier.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Supplier.objects.filter(code="adm6").exists()
    location.refresh_from_db()
    assert location.is_active is False  # its stock stops selling; the ledger stays


@pytest.mark.django_db
def test_admin_shows_a_service_refusal_as_a_message_and_saves_nothing(admin_client_logged_in):
    from apps.catalog.models import Location
    from apps.core.testing import admin_form

    Location.objects.create(code="wh9", name="Warehouse 9", kind=Location.Kind.WAREHOUSE)
    form = admin_form(admin_client_logged_in, "/admin/suppliers/supplier/add/")
    form.update({"code": "wh9", "name": "Acme", "connector": "webhook", "settings": "{}", "trust_factor": "1",
                 "max_age_minutes": "60", "poll_interval_s": "300", "priority": "10"})  # fmt: skip
    response = admin_client_logged_in.post("/admin/suppliers/supplier/add/", form, follow=True)
    assert response.status_code == 200
    assert "already exists and is not this supplier" in response.content.decode()
    assert not Supplier.objects.filter(code="wh9").exists()
    assert Location.objects.get(code="wh9").kind == Location.Kind.WAREHOUSE
