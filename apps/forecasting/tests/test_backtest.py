from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from apps.catalog.models import Movement
from apps.forecasting.services.backtest import item_backtest
from apps.forecasting.tests.conftest import NOW
from apps.forecasting.tests.factories import ledger_at


def _steady_then_spike(item, store):
    """Every day 10:00-10:59, two units a window, for eight weeks; one Saturday a rush of 9 in a window."""
    rows = [(datetime(2026, 8, 1, tzinfo=UTC), Movement.Kind.RECEIPT, 10_000)]
    day = datetime(2026, 8, 10, 10, 0, tzinfo=UTC)
    while day < datetime(2026, 11, 16, tzinfo=UTC):
        for quarter in range(4):
            rows.append((day + timedelta(minutes=15 * quarter + 3), Movement.Kind.POS_SALE, -2))
        day += timedelta(days=1)
    rows.append((datetime(2026, 11, 14, 15, 5, tzinfo=UTC), Movement.Kind.POS_SALE, -9))
    ledger_at(item, store, rows)


def test_backtest_counts_breaches_and_hidden_units(forecast_settings, item, store):
    _steady_then_spike(item, store)

    result = item_backtest(item=item, location=store, weeks=4, now=NOW)

    by_level = {round(o.service_level, 2): o for o in result.outcomes}
    assert set(by_level) == {0.8, 0.9, 0.95, 0.98, 0.99}
    chosen = result.chosen
    assert chosen is not None and chosen.service_level == 0.95
    # 4 weeks of 15-minute windows; the Saturday rush of 9 is a breach the forecast could not know.
    assert chosen.windows == 4 * 7 * 96
    assert chosen.breaches >= 1 and chosen.breached_units >= 9 - 4
    assert result.units_sold == 4 * 7 * 8 + 9
    # A higher service level never breaches more and never hides less.
    ordered = [by_level[k] for k in sorted(by_level)]
    for lower, higher in itertools.pairwise(ordered):
        assert higher.breaches <= lower.breaches
        assert higher.mean_hidden >= lower.mean_hidden
    assert not result.daily.empty and result.daily["breach"].sum() == chosen.breaches


def test_backtest_without_sales_is_empty_not_an_error(forecast_settings, item, store):
    ledger_at(item, store, [(datetime(2026, 8, 1, tzinfo=UTC), Movement.Kind.RECEIPT, 5)])
    result = item_backtest(item=item, location=store, weeks=4, now=NOW)
    assert result.units_sold == 0
    assert all(o.breaches == 0 for o in result.outcomes)
