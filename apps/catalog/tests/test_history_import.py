"""Past trade comes into the ledger with its own dates only when it is balanced: no level moves."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.catalog.models import Movement, StockLevel
from apps.catalog.services.past_trade import PastMovement, history_import
from apps.catalog.tests.factories import ItemFactory, LocationFactory, stock

pytestmark = pytest.mark.django_db


@pytest.fixture
def level():
    return stock(ItemFactory(sku="HOOD-M"), LocationFactory(code="S1"), 5)


def _week(level, *, sold: int = 3, received: int = 3, days_ago: int = 7) -> list[PastMovement]:
    at = timezone.now() - timedelta(days=days_ago)
    pair = (level.item_id, level.location_id)
    rows = [PastMovement(at, *pair, Movement.Kind.RECEIPT, on_hand_delta=received)]
    rows += [PastMovement(at + timedelta(hours=n + 1), *pair, Movement.Kind.POS_SALE, -1) for n in range(sold)]
    return rows


def test_balanced_history_is_written_with_its_dates_and_moves_no_level(level):
    assert history_import(movements=_week(level), reference="import:1", actor="test") == 4
    rows = Movement.objects.filter(reference="import:1").order_by("created_at")
    assert rows.count() == 4 and rows.first().created_at < timezone.now() - timedelta(days=6)
    assert StockLevel.objects.get(pk=level.pk).on_hand == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"received": 2}, "sum to zero"),
        ({"days_ago": -1}, "in the future"),
    ],
)
def test_unbalanced_or_future_history_is_refused_whole(level, change, message):
    with pytest.raises(ValueError, match=message):
        history_import(movements=_week(level, **change), reference="import:2", actor="test")
    assert not Movement.objects.filter(reference="import:2").exists()


def test_history_needs_the_level(level):
    elsewhere = LocationFactory(code="S9")
    at = timezone.now() - timedelta(days=2)
    rows = [
        PastMovement(at, level.item_id, elsewhere.pk, Movement.Kind.RECEIPT, on_hand_delta=1),
        PastMovement(at, level.item_id, elsewhere.pk, Movement.Kind.POS_SALE, on_hand_delta=-1),
    ]
    with pytest.raises(ValueError, match="no stock level"):
        history_import(movements=rows, reference="import:3", actor="test")
