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


def _texts(svg: str) -> list[tuple[float, str, str]]:
    """(x, anchor, text) of every <text> of the chart."""
    import xml.etree.ElementTree as ET

    ns = "{http://www.w3.org/2000/svg}"
    root = ET.fromstring(str(svg))
    return [
        (float(t.get("x", 0)), t.get("text-anchor", "start"), "".join(t.itertext()))
        for t in root.iter(f"{ns}text")
        if t.get("x") is not None
    ]


def _inside(svg: str, width: int) -> None:
    """Every label's estimated extent (charts.CHAR_W a character) lies within the chart."""
    for x, anchor, text in _texts(svg):
        w = charts.CHAR_W * len(text)
        lo = {"start": x, "middle": x - w / 2, "end": x - w}[anchor]
        assert lo >= 0 and lo + w <= width + 1, (text, x, anchor)


def test_bar_labels_and_values_are_never_clipped():
    from apps.core.durations import duration_text

    bars = [("A marketplace with a very long name indeed, Europe", 5400.0), ("web", 3.0)]
    svg = charts.bar_chart(title="Lag", bars=bars, width=440, value_text=duration_text, limit=30, limit_label="30 s")
    assert "1.5 h" in svg and "3 s" in svg
    assert "A marketplace with a very long name indeed, Europe</title>" in svg  # whole, in the tooltip
    assert "…" in svg  # cut on the chart
    # The visible labels only (a <title> child joins the text of its <text>): measure what is drawn.
    drawn = str(svg).replace("<title>A marketplace with a very long name indeed, Europe</title>", "")
    _inside(drawn, 440)
    wide = charts.bar_chart(title="Units", bars=[("x", 123456789.0)], unit="units", width=300, limit=1e9,
                            limit_label="a limit label far right")  # fmt: skip
    _inside(wide, 300)


def test_line_chart_tick_labels_stay_inside():
    start = datetime(2026, 11, 16, tzinfo=UTC)
    series = [charts.Series("on hand", [(start + timedelta(days=d), 1_250_000 * d) for d in range(8)])]
    svg = charts.line_chart(title="Stock", series=series, y_label="pieces", width=420)
    _inside(svg, 420)
