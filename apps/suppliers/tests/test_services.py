"""Staleness, scheduling, mapping validation, the freshness selector and the metrics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from apps.catalog.models import Location
from apps.catalog.signals import stock_changed
from apps.suppliers.models import Supplier, SupplierProduct
from apps.suppliers.schedules import BEAT_SCHEDULE
from apps.suppliers.selectors import feed_freshness
from apps.suppliers.services.ingest import feed_ingest
from apps.suppliers.services.mappings import mapping_validate
from apps.suppliers.services.staleness import suppliers_staleness_apply
from apps.suppliers.services.suppliers import supplier_update
from apps.suppliers.tests.factories import csv_feed, make_mapping, make_supplier, now_iso

pytestmark = pytest.mark.django_db


def test_new_supplier_sells_nothing_before_its_first_good_feed(sellable):
    supplier = make_supplier()
    mapping = make_mapping(supplier, "N1")
    from apps.catalog.tests.factories import stock

    stock(mapping.item, supplier.location, 5)  # even if something put stock there
    assert sellable(mapping.item, supplier.location) == 0


def test_stale_feed_sells_zero_and_the_job_tells_channels_once(sellable):
    supplier = make_supplier(max_age_minutes=30)
    mappings = [make_mapping(supplier, f"ST{i}") for i in range(3)]
    feed_ingest(supplier=supplier, raw=csv_feed([(f"ST{i}", 4, now_iso()) for i in range(3)]))
    assert sellable(mappings[0].item, supplier.location) == 4
    assert suppliers_staleness_apply() == []
    # Time passes with no feed: the location's validity runs out, so availability reads 0 at once.
    old = timezone.now() - timedelta(minutes=31)
    Supplier.objects.filter(pk=supplier.pk).update(last_success_at=old)
    Location.objects.filter(pk=supplier.location_id).update(stock_valid_until=old + timedelta(minutes=30))
    assert sellable(mappings[0].item, supplier.location) == 0
    heard: list = []

    def listen(sender, pairs, priority, reason, **kwargs):
        heard.append((sorted(pairs), reason))

    stock_changed.connect(listen)
    try:
        assert suppliers_staleness_apply() == [supplier.code]
        assert suppliers_staleness_apply() == []  # told once
        supplier.refresh_from_db()
        assert supplier.is_stale
        assert heard == [(sorted((m.item_id, supplier.location_id) for m in mappings), "supplier_feed_stale")]
        # A good feed again, with the same numbers: no movements, but channels hear that it sells again.
        heard.clear()
        run = feed_ingest(supplier=supplier, raw=csv_feed([(f"ST{i}", 4, now_iso()) for i in range(3)]))
    finally:
        stock_changed.disconnect(listen)
    assert run.rows_changed == 0
    assert [reason for _, reason in heard] == ["supplier_feed_fresh"]
    supplier.refresh_from_db()
    assert not supplier.is_stale
    assert sellable(mappings[0].item, supplier.location) == 4


def test_failing_supplier_goes_stale_by_max_age(sellable):
    supplier = make_supplier(max_age_minutes=10)
    mapping = make_mapping(supplier, "F1")
    feed_ingest(supplier=supplier, raw=csv_feed([("F1", 9, now_iso())]))
    feed_ingest(supplier=supplier, raw=b"broken")  # failures do not extend the validity
    Location.objects.filter(pk=supplier.location_id).update(stock_valid_until=timezone.now() - timedelta(minutes=5))
    assert sellable(mapping.item, supplier.location) == 0
    row = next(r for r in feed_freshness() if r["supplier"] == supplier.code)
    assert row["failures_in_row"] == 1 and row["breaker"] == "closed"


def test_trust_and_cap_changes_recompute_stock(on_hand):
    supplier = make_supplier()
    mapping = make_mapping(supplier, "T1")
    feed_ingest(supplier=supplier, raw=csv_feed([("T1", 100, now_iso())]))
    assert on_hand(mapping.item, supplier.location) == 100
    from decimal import Decimal

    supplier_update(supplier=supplier, actor="test", trust_factor=Decimal("0.5"))
    assert on_hand(mapping.item, supplier.location) == 50
    supplier_update(supplier=supplier, actor="test", cap=20)
    assert on_hand(mapping.item, supplier.location) == 20


def test_one_periodic_task_per_polled_supplier():
    rest = make_supplier("polled", connector="rest", settings={"url": "http://127.0.0.1:9/"}, poll_interval_s=90)
    make_supplier("pushed", connector="webhook", settings={}, secret="x" * 16)
    tasks = {t.name: t for t in PeriodicTask.objects.filter(name__startswith="supplier-poll:")}
    assert set(tasks) == {"supplier-poll:polled"}
    assert tasks["supplier-poll:polled"].interval.every == 90
    assert tasks["supplier-poll:polled"].args == f"[{rest.pk}]"
    supplier_update(supplier=rest, actor="test", poll_interval_s=300)
    assert PeriodicTask.objects.get(name="supplier-poll:polled").interval.every == 300
    assert BEAT_SCHEDULE["suppliers-mapping-validation"]["schedule"] == 1800.0


def test_mapping_validation_catches_skus_unseen_in_pushes(on_hand):
    supplier = make_supplier(connector="webhook", settings={"vanish_after_hours": 1}, secret="x" * 16)
    seen, quiet = make_mapping(supplier, "SEEN"), make_mapping(supplier, "QUIET")
    ts = now_iso()
    feed_ingest(supplier=supplier, records=[{"supplier_sku": "SEEN", "quantity": 2, "updated_at": ts}], full=False)
    feed_ingest(supplier=supplier, records=[{"supplier_sku": "QUIET", "quantity": 3, "updated_at": ts}], full=False)
    feed_ingest(supplier=supplier, records=[{"supplier_sku": "NEWONE", "quantity": 3, "updated_at": ts}], full=False)
    SupplierProduct.objects.filter(pk=quiet.pk).update(last_seen_at=timezone.now() - timedelta(hours=2))
    summary = mapping_validate(supplier=supplier)
    assert summary == {"suspect": 0, "vanished": 1, "unmapped": 1, "items_moved": 1}
    quiet.refresh_from_db()
    assert quiet.status == SupplierProduct.Status.VANISHED
    assert on_hand(quiet.item, supplier.location) == 0
    assert on_hand(seen.item, supplier.location) == 2


def test_feed_freshness_shape():
    fresh = make_supplier("fresh", max_age_minutes=60)
    make_mapping(fresh, "A")
    feed_ingest(supplier=fresh, raw=csv_feed([("A", 1, now_iso())]))
    make_supplier("never")
    rows = {r["supplier"]: r for r in feed_freshness()}
    assert set(rows["fresh"]) == {
        "supplier",
        "name",
        "last_success_at",
        "age_minutes",
        "max_age_minutes",
        "stale",
        "failures_in_row",
        "breaker",
    }
    assert rows["fresh"]["stale"] is False and rows["fresh"]["age_minutes"] < 1
    assert rows["never"]["stale"] is True and rows["never"]["age_minutes"] is None


def test_metrics_expose_runs_quarantined_rows_and_feed_age():
    supplier = make_supplier("metered")
    for sku in ("A", "B", "C"):
        make_mapping(supplier, sku)
    feed_ingest(supplier=supplier, raw=csv_feed([("A", 1, now_iso()), ("B", "x", now_iso()), ("C", 2, now_iso())]))
    lines = Client().get("/metrics").content.decode().splitlines()

    def sample(name: str, **labels: str) -> float:
        for line in lines:
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{name} {labels} not exported")

    assert sample("stockroom_supplier_feed_runs_total", supplier="metered", status="succeeded") >= 1
    assert sample("stockroom_supplier_feed_rows_quarantined_total", supplier="metered") >= 1
    assert 0 <= sample("stockroom_supplier_feed_age_seconds", supplier="metered") < 60
    assert sample("stockroom_supplier_feed_stale", supplier="metered") == 0


def test_channel_listing_never_shows_stale_or_inflated_supplier_stock():
    from apps.catalog.tests.factories import LocationFactory, product_of, stock
    from apps.channels.models import Channel, ChannelLocation, Listing
    from apps.channels.selectors import listings_availability

    supplier = make_supplier("infl", trust_factor="0.5", cap=40, max_age_minutes=30)
    mapping = make_mapping(supplier, "INF-1")
    store = LocationFactory(code="store1")
    stock(mapping.item, store, 3)
    channel = Channel.objects.create(code="market", name="Market")
    ChannelLocation.objects.create(channel=channel, location=store, priority=0)
    ChannelLocation.objects.create(channel=channel, location=supplier.location, priority=1)
    listing = Listing.objects.create(
        channel=channel, channel_sku="M-INF-1", product=product_of("INF", {mapping.item: 1})
    )
    assert listings_availability([listing.pk])[listing.pk].available == 3  # no feed yet: only the store
    feed_ingest(supplier=supplier, raw=csv_feed([("INF-1", 10_000, now_iso())]))
    assert listings_availability([listing.pk])[listing.pk].available == 3 + 40  # half of 10,000, capped at 40
    Location.objects.filter(pk=supplier.location_id).update(stock_valid_until=timezone.now() - timedelta(minutes=5))
    assert listings_availability([listing.pk])[listing.pk].available == 3  # stale: the supplier sells nothing
