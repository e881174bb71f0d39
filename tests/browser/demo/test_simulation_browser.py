"""The simulated day's report (sandbox/demo/simulation/report.py) opens in a browser with its charts drawn."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.demo.simulation.report import write


@pytest.mark.browser
def test_report_renders_with_its_chart_in_a_browser(tmp_path, browser_page):
    from sandbox.demo.simulation.engine import Outcome

    outcome = Outcome(system="Stockroom", online_orders=10, accepted=9, refused=1)
    outcome.timeline = [(0.0, 0), (1.0, 0)]
    naive = Outcome(system="naive baseline", online_orders=10, accepted=10, oversold_orders=2)
    naive.timeline = [(0.0, 0), (0.5, 1), (1.0, 3)]
    naive.oversold_units.update({"warehouse shelf empty at shipping (books were wrong)": 3})
    _, html = write([outcome, naive], seed=1, hours=1, command="python manage.py simulate", directory=tmp_path)
    browser_page.goto(Path(html).as_uri())
    assert browser_page.locator("h1").inner_text() == "A simulated trading day"
    assert browser_page.locator("svg").count() >= 2
    assert browser_page.locator("svg path, svg polyline").count() >= 2
    screenshots = Path(__file__).resolve().parents[3] / "var" / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    browser_page.screenshot(path=str(screenshots / "simulation-report.png"), full_page=True)
