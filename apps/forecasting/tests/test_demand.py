from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from apps.catalog.models import Movement
from apps.forecasting.services.demand import demand_history, first_seen, slot_matrix, slot_of, week_start
from apps.forecasting.tests.conftest import NOW
from apps.forecasting.tests.factories import ledger_at


def test_slot_is_the_hour_of_the_week():
    assert slot_of(datetime(2026, 11, 16, 0, 5, tzinfo=UTC)) == 0  # Monday
    assert slot_of(datetime(2026, 11, 18, 12, 0, tzinfo=UTC)) == 2 * 24 + 12
    assert slot_of(datetime(2026, 11, 22, 23, 59, tzinfo=UTC)) == 167  # Sunday
    assert week_start(NOW) == datetime(2026, 11, 16, tzinfo=UTC)


def test_demand_is_summed_per_slot_and_week_split_by_channel(item, store):
    monday = datetime(2026, 11, 9, 10, 5, tzinfo=UTC)
    ledger_at(
        item,
        store,
        [
            (datetime(2026, 10, 1, tzinfo=UTC), Movement.Kind.RECEIPT, 100),
            (monday, Movement.Kind.POS_SALE, -2),
            (monday + timedelta(minutes=40), Movement.Kind.POS_SALE, -1),
            (monday + timedelta(minutes=10), Movement.Kind.FULFIL, -4),
            (monday + timedelta(hours=1), Movement.Kind.POS_SALE, -5),
            (monday + timedelta(minutes=20), Movement.Kind.ADJUSTMENT, -7),  # not demand
        ],
    )
    frame = demand_history(since=datetime(2026, 11, 1, tzinfo=UTC), until=NOW)
    rows = {(r.slot, r.offline, r.online) for r in frame.itertuples()}
    assert rows == {(10, 3, 4), (11, 5, 0)}
    assert set(frame["week"]) == {pd.Timestamp("2026-11-09", tz="UTC")}


def test_slot_matrix_zero_fills_and_masks_weeks_before_the_item_was_stocked(item, store):
    weeks = [datetime(2026, 10, 26, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 9, tzinfo=UTC)]
    ledger_at(
        item,
        store,
        [
            (datetime(2026, 11, 1, tzinfo=UTC), Movement.Kind.RECEIPT, 10),
            (datetime(2026, 11, 10, 9, 0, tzinfo=UTC), Movement.Kind.POS_SALE, -2),  # Tuesday 09:00: slot 33
        ],
    )
    history = demand_history(since=weeks[0], until=NOW)
    matrix = slot_matrix(history, pairs=[(item.pk, store.pk)], weeks=weeks, seen=first_seen())
    assert matrix.demand.shape == (168, 3)
    assert matrix.demand[33].tolist() == [0, 0, 2]
    assert matrix.demand.sum() == 2
    assert matrix.observed[0].tolist() == [False, True, True]
