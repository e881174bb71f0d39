from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apps.staff import charts


def test_line_chart_draws_each_series_with_axes_and_legend():
    start = datetime(2026, 11, 16, tzinfo=UTC)
    svg = charts.line_chart(
        title="Stock <of> HOOD",
        y_label="pieces",
        series=[
            charts.Series("on hand", [(start + timedelta(hours=h), 10 - h) for h in range(5)], step=True),
            charts.Series("reserved", [(start + timedelta(hours=h), 1) for h in range(5)]),
        ],
    )
    assert svg.startswith("<svg") and svg.count('class="series"') == 2
    assert 'data-series="on hand"' in svg and "pieces" in svg
    assert "Stock &lt;of&gt; HOOD" in svg and "<of>" not in svg
    assert svg.count('class="legend"') == 1


def test_numeric_line_chart_and_empty_state():
    svg = charts.line_chart(
        title="Trade-off", series=[charts.Series("levels", [(0.5, 10.0), (2.0, 1.0)], markers=True)]
    )
    assert svg.count("<circle") == 2
    empty = charts.line_chart(title="Nothing", series=[charts.Series("a", [])], empty_message="No data yet")
    assert 'class="chart empty"' in empty and "No data yet" in empty


def test_bar_chart_has_one_bar_per_label_and_a_limit():
    svg = charts.bar_chart(
        title="Lag", unit="s", bars=[("shop", 3.0), ("market <b>", 42.0)], limit=30, limit_label="30 s"
    )
    assert svg.count('class="bar"') == 2 and 'class="limit"' in svg
    assert "market &lt;b&gt;" in svg


def test_nice_ticks_cover_the_range_with_round_steps():
    assert charts.nice_ticks(0, 9) == [0, 2, 4, 6, 8, 10]
    assert charts.nice_ticks(0, 0.3)[-1] >= 0.3
    assert charts.nice_ticks(5, 5)[0] <= 5
