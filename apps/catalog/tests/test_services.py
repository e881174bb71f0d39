"""Stock services: movements, catalog writes and their side effects."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from apps.catalog.errors import InUse, InvalidMovement, NegativeStockRefused
from apps.catalog.models import Incident, Movement, Product, StockLevel
from apps.catalog.services.catalog import ComponentSpec, catalog_record_delete, product_create, product_update
from apps.catalog.services.movements import stock_movement_record
from apps.catalog.signals import products_changed
from apps.catalog.tests.factories import ItemFactory, LocationFactory, stock
from apps.core.errors import IdempotencyKeyReused

pytestmark = pytest.mark.django_db


def record(**kwargs):
    defaults = {"location_code": "WH", "item_sku": "HOOD", "kind": "receipt", "quantity": 5, "actor": "t"}
    defaults.setdefault("idempotency_key", kwargs.pop("key", "k1"))
    return stock_movement_record(**{**defaults, **kwargs})


@pytest.fixture
def hoodie():
    LocationFactory(code="WH")
    LocationFactory(code="S1", kind="store", allow_negative=True)
    return ItemFactory(sku="HOOD")


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_movement_changes_level_and_writes_one_ledger_row(hoodie):
    result = record(quantity=5)
    assert result.level.on_hand == 5 and not result.replayed
    assert list(Movement.objects.values_list("kind", "on_hand_delta")) == [("receipt", 5)]


def test_replay_is_the_same_movement_and_other_kind_is_refused(hoodie):
    first = record(quantity=5)
    again = record(quantity=5)
    assert again.replayed and again.movement.pk == first.movement.pk
    with pytest.raises(IdempotencyKeyReused):
        record(kind="pos_sale", quantity=5)
    assert StockLevel.objects.get(item=hoodie).on_hand == 5


def test_stores_can_go_negative_warehouses_cannot(hoodie):
    sold = record(location_code="S1", kind="pos_sale", quantity=2)
    assert sold.level.on_hand == -2
    assert sold.incident is None and not Incident.objects.exists()  # nothing was reserved: no one's order is short
    with pytest.raises(NegativeStockRefused):
        record(kind="pos_sale", quantity=1, key="k2")
    assert not Movement.objects.filter(location__code="WH").exists()


@pytest.mark.parametrize("kind, quantity", [("reserve", 1), ("receipt", -1), ("pos_sale", 0), ("receipt", 10**13)])
def test_invalid_movements_are_refused(hoodie, kind, quantity):
    with pytest.raises(InvalidMovement):
        record(kind=kind, quantity=quantity)


def test_counters_for_movements_and_incidents_count_after_commit(hoodie, django_capture_on_commit_callbacks):
    receipts, incidents = (
        metric("stockroom_movements_recorded_total", kind="receipt"),
        metric("stockroom_incidents_opened_total", kind="pos_into_reserved"),
    )
    with django_capture_on_commit_callbacks(execute=True):
        record(location_code="S1", quantity=2)
    level = StockLevel.objects.get(location__code="S1")
    StockLevel.objects.filter(pk=level.pk).update(reserved=2)
    with django_capture_on_commit_callbacks(execute=True):
        result = record(location_code="S1", kind="pos_sale", quantity=1, key="k2")
    assert result.incident is not None and result.incident.kind == Incident.Kind.POS_INTO_RESERVED
    assert metric("stockroom_movements_recorded_total", kind="receipt") == receipts + 1
    assert metric("stockroom_incidents_opened_total", kind="pos_into_reserved") == incidents + 1


def test_product_make_up_change_tells_channels(hoodie):
    cap = ItemFactory(sku="CAP")
    heard = []
    products_changed.connect(lambda **kw: heard.append(kw["product_ids"]), weak=False, dispatch_uid="t-heard")
    try:
        product = product_create(
            code="KIT", name="Kit", kind="bundle", components=[ComponentSpec(hoodie, 1), ComponentSpec(cap, 1)]
        )
        product_update(product=product, components=[ComponentSpec(hoodie, 1), ComponentSpec(cap, 1)])
        assert heard == []  # same make-up, nothing to sync
        product_update(product=product, components=[ComponentSpec(hoodie, 2), ComponentSpec(cap, 1)])
        assert heard == [[product.pk]]
    finally:
        products_changed.disconnect(dispatch_uid="t-heard")
    assert sorted(product.components.values_list("item__sku", "quantity")) == [("CAP", 1), ("HOOD", 2)]


def test_delete_in_use_is_refused_and_keeps_everything(hoodie):
    stock(hoodie, LocationFactory(code="WH"), 1)
    with pytest.raises(InUse) as refused:
        catalog_record_delete(instance=hoodie, label="Item HOOD")
    assert "ledger" in refused.value.detail or "movements" in refused.value.detail
    assert StockLevel.objects.filter(item=hoodie).exists()
    unused = Product.objects.create(code="GONE", name="gone")
    catalog_record_delete(instance=unused, label="Product GONE")
    assert not Product.objects.filter(code="GONE").exists()
