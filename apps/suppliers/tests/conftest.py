from __future__ import annotations

import pytest

from apps.catalog.models import StockLevel
from apps.catalog.selectors import products_atp_by_location
from apps.catalog.tests.factories import product_of


@pytest.fixture(autouse=True)
def drop_root(tmp_path, settings):
    """Folder suppliers read only below the drop root: each test gets its own, under its tmp dir."""
    root = tmp_path / "drop"
    root.mkdir()
    settings.STOCKROOM_DROP_ROOT = root
    return root


@pytest.fixture
def sellable():
    """What a product made of this one item can sell at a location, through the real availability SQL."""

    def atp(item, location) -> int:
        product = product_of(f"P-{item.sku}", {item: 1})
        return products_atp_by_location([product.id], [location.id]).get((product.id, location.id), 0)

    return atp


@pytest.fixture
def on_hand():
    def read(item, location) -> int:
        level = StockLevel.objects.filter(item=item, location=location).first()
        return level.on_hand if level else 0

    return read
