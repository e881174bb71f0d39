"""The staff supplier API and the signed webhook, through HTTP with real tokens."""

from __future__ import annotations

import json
import time

import pytest
from django_celery_beat.models import PeriodicTask

from apps.catalog.models import Location, Movement
from apps.catalog.tests.factories import ItemFactory
from apps.core.testing import error_fields
from apps.suppliers.models import FeedRun, Supplier, SupplierProduct, WebhookReceipt
from apps.suppliers.services.ingest import feed_ingest
from apps.suppliers.services.webhooks import webhook_signature
from apps.suppliers.tests.factories import csv_feed, make_mapping, make_supplier, now_iso

pytestmark = pytest.mark.django_db

SECRET = "whsec-0123456789abcdef"


def test_supplier_crud_creates_location_and_schedule_and_hides_secret(staff_api):
    created = staff_api.post(
        "/api/v1/suppliers/",
        {
            "code": "acme",
            "name": "Acme",
            "connector": "rest",
            "settings": {"url": "http://127.0.0.1:9/feed", "page_param": "p"},
            "secret": "api-key-secret-1234",
            "trust_factor": "0.9",
            "cap": 50,
            "max_age_minutes": 60,
            "poll_interval_s": 120,
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert "secret" not in body and body["secret_set"] is True
    assert "api-key-secret-1234" not in json.dumps(body)
    assert body["location"] == "acme"
    location = Location.objects.get(code="acme")
    assert location.kind == Location.Kind.SUPPLIER
    task = PeriodicTask.objects.get(name="supplier-poll:acme")
    assert task.enabled and task.interval.every == 120 and task.task == "suppliers.supplier_poll"

    listed = staff_api.get("/api/v1/suppliers/").json()
    assert listed["count"] == 1 and listed["results"][0]["code"] == "acme"

    changed = staff_api.patch("/api/v1/suppliers/acme/", {"poll_interval_s": 600, "is_active": False}, format="json")
    assert changed.status_code == 200
    task.refresh_from_db()
    assert task.interval.every == 600 and not task.enabled
    assert Supplier.objects.get(code="acme").secret == "api-key-secret-1234"  # untouched when not sent

    assert staff_api.delete("/api/v1/suppliers/acme/").status_code == 204
    assert not PeriodicTask.objects.filter(name="supplier-poll:acme").exists()
    location.refresh_from_db()
    assert not location.is_active


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"connector": "rest", "settings": {}}, "settings"),
        ({"connector": "webhook", "settings": {}}, "secret"),
        ({"connector": "folder", "settings": {"path": "/x"}, "trust_factor": "1.5"}, "trust_factor"),
        ({"connector": "folder", "settings": {"path": "/x", "password": "p"}}, "settings"),
        ({"connector": "ftp", "settings": {}}, "connector"),
        ({"connector": "folder", "settings": [1]}, "settings"),
        ({"connector": "folder", "settings": {"path": "/x"}, "poll_interval_s": 1}, "poll_interval_s"),
    ],
)
def test_bad_supplier_input_is_400_with_field_errors(staff_api, payload, field):
    response = staff_api.post("/api/v1/suppliers/", {"code": "bad", "name": "Bad", **payload}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in error_fields(response.json())
    assert not Supplier.objects.exists() and not Location.objects.filter(code="bad").exists()


def test_supplier_endpoints_need_a_staff_token(client, channel_api):
    assert client.get("/api/v1/suppliers/").status_code == 401


def test_supplier_products_crud_moves_stock(staff_api):
    supplier = make_supplier("dropco")
    item = ItemFactory(sku="MUG")
    created = staff_api.post(
        "/api/v1/supplier-products/",
        {"supplier": "dropco", "supplier_sku": "D-MUG-6", "item": "MUG", "units_per_pack": 6, "lead_time_days": 3},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["status"] == "active"
    feed_ingest(supplier=supplier, raw=csv_feed([("D-MUG-6", 2, now_iso())]))
    assert Movement.objects.filter(item=item, location=supplier.location).count() == 1
    mapping_id = created.json()["id"]
    patched = staff_api.patch(f"/api/v1/supplier-products/{mapping_id}/", {"units_per_pack": 12}, format="json")
    assert patched.status_code == 200
    from apps.catalog.models import StockLevel

    assert StockLevel.objects.get(item=item, location=supplier.location).on_hand == 24
    duplicate = staff_api.post(
        "/api/v1/supplier-products/", {"supplier": "dropco", "supplier_sku": "D-MUG-6", "item": "MUG"}, format="json"
    )
    assert duplicate.status_code == 409 and "supplier_sku" in error_fields(duplicate.json())
    listed = staff_api.get("/api/v1/supplier-products/?supplier=dropco&status=active").json()
    assert [m["supplier_sku"] for m in listed["results"]] == ["D-MUG-6"]
    assert staff_api.delete(f"/api/v1/supplier-products/{mapping_id}/").status_code == 204
    assert StockLevel.objects.get(item=item, location=supplier.location).on_hand == 0


def test_feed_runs_and_their_quarantined_rows(staff_api, django_assert_max_num_queries):
    supplier = make_supplier("runs")
    make_mapping(supplier, "A")
    other = make_supplier("other")
    ts = now_iso()
    run = feed_ingest(supplier=supplier, raw=csv_feed([("A", 1, ts), ("A", "x", ts), ("B", 2, ts), ("A", 1, ts)]))
    feed_ingest(supplier=other, raw=b"garbage")
    with django_assert_max_num_queries(6):
        listed = staff_api.get("/api/v1/feed-runs/?supplier=runs").json()
    assert listed["count"] == 1
    row = listed["results"][0]
    assert {k: row[k] for k in ("status", "rows_read", "rows_accepted", "rows_quarantined", "rows_changed")} == {
        "status": run.status,
        "rows_read": 4,
        "rows_accepted": run.rows_accepted,
        "rows_quarantined": run.rows_quarantined,
        "rows_changed": run.rows_changed,
    }
    assert row["rows_quarantined"] == 3 and row["rows_rejected"] == 3  # the deprecated name says the same
    assert row["started_at"] and row["finished_at"]
    quarantine = staff_api.get(f"/api/v1/feed-runs/{run.pk}/quarantine/")
    assert quarantine.status_code == 200 and "Deprecation" not in quarantine.headers
    assert quarantine.json()["count"] == run.rows_quarantined
    assert {r["reason"].split(" ")[0] for r in quarantine.json()["results"]} >= {"quantity", "unmapped"}
    assert staff_api.get("/api/v1/feed-runs/999999/quarantine/").status_code == 404


def test_the_old_rejections_address_still_answers_and_says_it_is_deprecated(staff_api):
    supplier = make_supplier("old")
    make_mapping(supplier, "A")
    ts = now_iso()
    run = feed_ingest(supplier=supplier, raw=csv_feed([("A", 1, ts), ("A", "x", ts), ("B", 2, ts)]))
    old = staff_api.get(f"/api/v1/feed-runs/{run.pk}/rejections/")
    new = staff_api.get(f"/api/v1/feed-runs/{run.pk}/quarantine/")
    assert old.status_code == 200 and old.json() == new.json() and old.json()["count"] == 2
    assert old.headers["Deprecation"] == "@1796601600"
    assert old.headers["Link"] == f'<http://testserver/api/v1/feed-runs/{run.pk}/quarantine/>; rel="successor-version"'
    # A wrong id is still a 404, and still says where to go.
    missing = staff_api.get("/api/v1/feed-runs/999999/rejections/")
    assert missing.status_code == 404 and missing.headers["Deprecation"] == "@1796601600"
    assert "/api/v1/feed-runs/999999/quarantine/" in missing.headers["Link"]
    # Only the old address: the run itself and its list are not deprecated.
    assert "Deprecation" not in staff_api.get(f"/api/v1/feed-runs/{run.pk}/").headers


def test_the_schema_marks_the_old_names_deprecated_and_documents_the_new(staff_api):
    schema = staff_api.get("/api/v1/schema/?format=json").json()
    old = schema["paths"]["/api/v1/feed-runs/{id}/rejections/"]["get"]
    new = schema["paths"]["/api/v1/feed-runs/{id}/quarantine/"]["get"]
    assert old["deprecated"] is True and "deprecated" not in new
    assert {"Deprecation", "Link"} <= set(old["responses"]["200"]["headers"])
    assert "headers" not in new["responses"]["200"] or "Deprecation" not in new["responses"]["200"]["headers"]
    assert old["responses"]["200"]["content"] == new["responses"]["200"]["content"]
    fields = schema["components"]["schemas"]["FeedRun"]["properties"]
    assert (
        fields["rows_rejected"]["deprecated"] is True and "rows_quarantined" in fields["rows_rejected"]["description"]
    )
    assert "deprecated" not in fields["rows_quarantined"]


# --- webhook -------------------------------------------------------------------------------------


def _signed(supplier_code: str, body: dict | bytes, *, secret: str = SECRET, ts: int | None = None) -> dict:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stamp = str(ts if ts is not None else int(time.time()))
    return {
        "path": f"/api/v1/suppliers/{supplier_code}/webhook/",
        "data": raw,
        "content_type": "application/json",
        "HTTP_X_TIMESTAMP": stamp,
        "HTTP_X_SIGNATURE": webhook_signature(secret=secret, timestamp=stamp, body=raw),
    }


@pytest.fixture
def pushing():
    supplier = make_supplier("pusher", connector="webhook", settings={}, secret=SECRET)
    make_mapping(supplier, "P1")
    make_mapping(supplier, "P2")
    return supplier


def test_webhook_signed_push_is_taken_in_as_a_partial_feed(client, pushing):
    from apps.catalog.models import StockLevel

    ts = now_iso()
    first = client.post(**_signed("pusher", {"items": [{"supplier_sku": "P1", "quantity": 4, "updated_at": ts}]}))
    assert first.status_code == 202, first.json()
    assert first.json()["rows_accepted"] == 1
    second = client.post(**_signed("pusher", {"items": [{"supplier_sku": "P2", "quantity": 2, "updated_at": ts}]}))
    assert second.status_code == 202
    # A push names only what changed: P1 did not vanish.
    assert SupplierProduct.objects.get(supplier_sku="P1").status == "active"
    levels = dict(StockLevel.objects.filter(location=pushing.location).values_list("item__sku", "on_hand"))
    assert levels == {"ITEM-P1": 4, "ITEM-P2": 2}


def test_webhook_forged_stale_replayed_are_401_and_logged(client, pushing, caplog):
    body = {"items": [{"supplier_sku": "P1", "quantity": 4, "updated_at": now_iso()}]}
    forged = client.post(**_signed("pusher", body, secret="not-the-secret"))
    assert forged.status_code == 401 and forged.json()["code"] == "bad_signature"
    stale = client.post(**_signed("pusher", body, ts=int(time.time()) - 301))
    assert stale.status_code == 401 and stale.json()["code"] == "stale_timestamp"
    good = _signed("pusher", body)
    assert client.post(**good).status_code == 202
    replay = client.post(**good)
    assert replay.status_code == 401 and replay.json()["code"] == "replayed"
    tampered = dict(good, data=json.dumps({"items": [{"supplier_sku": "P1", "quantity": 999}]}).encode())
    assert client.post(**tampered).status_code == 401
    unsigned = client.post("/api/v1/suppliers/pusher/webhook/", data=b"{}", content_type="application/json")
    assert unsigned.status_code == 401
    unknown = client.post(**_signed("nobody", body))
    assert unknown.status_code == 401
    assert FeedRun.objects.filter(supplier=pushing).count() == 1
    assert WebhookReceipt.objects.filter(supplier=pushing).count() == 1


def test_webhook_bad_body_is_400_and_mostly_bad_is_422(client, pushing):
    assert client.post(**_signed("pusher", b"not json")).status_code == 400
    assert client.post(**_signed("pusher", {"things": []})).status_code == 400
    ts = now_iso()
    refused = client.post(
        **_signed(
            "pusher",
            {
                "items": [
                    {"supplier_sku": "P1", "quantity": -1, "updated_at": ts},
                    {"supplier_sku": "P2", "quantity": "many", "updated_at": ts},
                    "not an object",
                ]
            },
        )
    )
    assert refused.status_code == 422
    assert refused.json()["code"] == "feed_refused"
    assert refused.json()["run"]["rows_quarantined"] == refused.json()["run"]["rows_rejected"] == 3


def test_webhook_query_count_is_pinned_whatever_the_number_of_items(client, pushing, django_assert_num_queries):
    for i in range(40):
        make_mapping(pushing, f"Q{i}")
    ts = now_iso()

    def push(n: int, qty: int) -> None:
        items = [{"supplier_sku": f"Q{i}", "quantity": qty, "updated_at": ts} for i in range(n)]
        assert client.post(**_signed("pusher", {"items": items})).status_code == 202

    push(40, 1)  # first sight: every level is created
    with django_assert_num_queries(PUSH_QUERIES):
        push(3, 2)
    with django_assert_num_queries(PUSH_QUERIES):
        push(40, 3)


PUSH_QUERIES = 28


@pytest.mark.parametrize("path", ["/etc", "../../etc", "in/../../x", "escape", "a\u0000b", ""])
def test_folder_supplier_path_outside_the_drop_root_is_400(staff_api, drop_root, path):
    (drop_root / "escape").symlink_to("/tmp")
    body = {"code": "drop1", "name": "Drop", "connector": "folder", "settings": {"path": path}}
    response = staff_api.post("/api/v1/suppliers/", body, format="json")
    assert response.status_code == 400, response.json()
    # a NUL byte is refused by the API's JSON parser before the serializer sees the field
    expected = "invalid_text" if "\u0000" in path else "settings"
    assert expected in json.dumps(response.json())
    assert not Supplier.objects.filter(code="drop1").exists()
    inside = staff_api.post("/api/v1/suppliers/", dict(body, settings={"path": "drop1"}), format="json")
    assert inside.status_code == 201, inside.json()
    moved = staff_api.patch("/api/v1/suppliers/drop1/", {"settings": {"path": str(drop_root.parent)}}, format="json")
    assert moved.status_code == 400


def test_webhook_deeply_nested_is_400_and_oversized_is_refused(client, pushing, settings):
    deep = b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert client.post(**_signed("pusher", deep)).status_code == 400
    settings.FEED_MAX_BYTES = 100
    items = {"items": [{"supplier_sku": "P1", "quantity": 4, "updated_at": now_iso()}] * 5}
    refused = client.post(**_signed("pusher", items))
    assert refused.status_code == 422 and refused.json()["code"] == "feed_refused"
    assert FeedRun.objects.get(supplier=pushing, status=FeedRun.Status.REFUSED).error.startswith("webhook body")
