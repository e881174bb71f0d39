"""A few simulated minutes: Stockroom accepts nothing beyond stock where the naive baseline does."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from sandbox.demo.simulation.engine import CAUSES, GUARANTEED, Engine
from sandbox.demo.simulation.events import generate
from sandbox.demo.simulation.naive import NaiveSystem
from sandbox.demo.simulation.report import write
from sandbox.demo.simulation.stockroom import StockroomSystem
from sandbox.demo.simulation.world import build_world

SEED = 11


@pytest.fixture(scope="module")
def day():
    world = build_world(seed=SEED, items=8)
    return world, generate(world, seed=SEED, hours=6 / 60, orders=160, start_hour=11)


def test_same_seed_same_day():
    world = build_world(seed=SEED, items=8)
    first = generate(world, seed=SEED, hours=0.1, orders=50, start_hour=11)
    again = generate(build_world(seed=SEED, items=8), seed=SEED, hours=0.1, orders=50, start_hour=11)
    assert first.events == again.events and first.opening == again.opening


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_stockroom_never_accepts_beyond_stock_where_naive_does(day, tmp_path):
    world, stream = day
    stockroom = Engine(
        world=world, stream=stream, system=StockroomSystem(tick_s=2.0, work_dir=tmp_path), tick_s=2.0, threads=6
    ).run()
    naive_system = NaiveSystem(sync_minutes=15)
    naive = Engine(world=world, stream=stream, system=naive_system, tick_s=2.0, threads=6).run()
    naive_system.cleanup()

    assert stockroom.accepted > 50 and naive.accepted > 50
    # Never beyond stock because of concurrency or supplier data, whatever the interleaving.
    assert all(stockroom.oversold_units[CAUSES[cause]] == 0 for cause in GUARANTEED), stockroom.oversold_units
    assert naive.oversold_orders > 0, "the naive baseline should oversell on this stream"
    # What remains (a marketplace selling inside the push latency, tills taking promised units) stays rare.
    assert stockroom.oversell_rate <= naive.oversell_rate / 3, (stockroom.oversold_units, naive.oversold_units)

    # Staff hear of what stock could not cover (imports short, tills into reserved stock); the naive shop does not.
    assert naive.incidents == {}
    assert set(stockroom.incidents) <= {
        "oversell",
        "pos_into_reserved",
        "supplier_refusal",
        "feed_refused",
        "mapping_suspect",
    }

    # Safety stock covers what suppliers sell elsewhere while their last feed still counts, too.
    assert stockroom.supplier_safety_hidden_units > 0 and naive.supplier_safety_hidden_units == 0

    md, html = write([stockroom, naive], seed=SEED, hours=stream.hours, command="test", directory=tmp_path)
    report = md.read_text()
    assert "| oversell rate (of accepted) |" in report
    assert f"| units held back by supplier safety stock (average) | {stockroom.supplier_safety_hidden_units:,} |" in (
        report
    )
    assert "| what channels show is brought up to date every | 2 s | 15 min |" in report
    assert f"| incidents opened for staff | {sum(stockroom.incidents.values()):,} | 0 |" in report
    assert "<svg" in html.read_text()


def test_the_report_gives_till_shortfalls_as_a_share_of_online_orders(tmp_path):
    from sandbox.demo.simulation.engine import Outcome

    dynamic = Outcome(system="dynamic", online_orders=4_000, accepted=3_900, safety_hidden_units=120)
    fixed = Outcome(system="fixed", online_orders=4_000, accepted=3_900, safety_hidden_units=120)
    fixed.oversold_units.update({CAUSES["store"]: 3, CAUSES["unallocated"]: 5})  # latency is not the tills' doing
    md, _ = write([dynamic, fixed], seed=1, hours=1, command="test", directory=tmp_path)
    report = md.read_text()
    assert "| till-sale shortfalls, % of online orders | 0.000 % | 0.075 % |" in report
    assert "| units held back by store safety stock (average) | 120 | 120 |" in report


def test_the_warehouse_is_stocked_a_little_short_of_what_it_serves():
    from sandbox.demo.simulation.events import HOURLY_PROFILE, _profile_share

    windows = [(0, 3), (3, 6.5), (6.5, 24)]
    assert sum(_profile_share(HOURLY_PROFILE, w, 0, 24) for w in windows) == pytest.approx(1.0)
    assert _profile_share(HOURLY_PROFILE, (0, 3), 0, 24) < _profile_share(HOURLY_PROFILE, (12, 15), 0, 24)

    world = build_world(seed=SEED, items=8)
    stream = generate(world, seed=SEED, hours=24, orders=20_000)
    products = {p.code: p for p in world.products}
    first_from_warehouse = {c.code for c in world.channels if c.locations[0] == world.warehouse}
    # Pieces only: weighted items are counted in grams.
    wanted = sum(
        units * e.quantity
        for e in stream.events
        if e.kind == "order" and e.channel in first_from_warehouse
        for sku, units in products[e.product].components
        if world.item_units[sku] == "piece"
    )
    supplied = sum(
        n for (sku, loc), n in stream.opening.items() if loc == world.warehouse and world.item_units[sku] == "piece"
    ) + sum(
        e.quantity
        for e in stream.events
        if e.kind == "receipt" and e.location == world.warehouse and world.item_units[e.sku] == "piece"
    )
    assert 0.8 * wanted < supplied < wanted


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_command_runs_the_days_side_by_side_and_reports_them_in_order(tmp_path):
    # As a user runs it: its own process. Forked runs must not inherit this test process's other
    # threads (a browser test's live server keeps one with an open connection), whose connections
    # a child would end on the server when it lets go of them.
    database = connection.settings_dict
    # The URL this process was given (by the stack command), pointed at the test database.
    url = urlsplit(settings.DATABASE_URL)._replace(path=f"/{database['NAME']}").geturl()
    result = subprocess.run(
        [sys.executable, "manage.py", "simulate",
         *("--hours", "0.05", "--start-hour", "11", "--seed", str(SEED), "--orders", "40", "--items", "8"),
         *("--tick", "2", "--threads", "4", "--server", "inprocess", "--parallel", "--out", str(tmp_path)),
         *("--safety", "dynamic,fixed,fixed-matched")],
        cwd=settings.BASE_DIR, env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    assert "4 runs side by side" in text
    assert "Stockroom (fixed safety stock): hour  0.00:" in text  # each run tells its progress
    header = next(line for line in text.splitlines() if line.startswith("| |"))
    assert header == (
        "| | Stockroom (dynamic safety stock) | Stockroom (fixed safety stock)"
        " | Stockroom (fixed safety stock, as many units as dynamic) | naive baseline |"
    )
    held = next(line for line in text.splitlines() if line.startswith("| units held back by store safety"))
    dynamic, fixed, matched, naive = (int(cell.replace(",", "")) for cell in held.strip("|").split("|")[1:])
    assert fixed >= dynamic > 0 and naive == 0  # one number all day is what the busiest hour needs
    assert abs(matched - dynamic) <= 16  # scaled to the same units, give or take rounding on 16 store pairs
    assert len(list(tmp_path.glob("simulation-*.md"))) == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_one_run_after_another_logs_a_line_an_hour_and_keeps_the_report_of_each_finished_run(tmp_path):
    out = io.StringIO()  # not a terminal: a log file or a pipe
    call_command(
        "simulate",
        *("--hours", "1.02", "--start-hour", "3", "--seed", str(SEED), "--orders", "30", "--items", "8"),
        *("--tick", "30", "--threads", "4", "--server", "inprocess", "--out", str(tmp_path)),
        *("--safety", "dynamic"),
        stdout=out,
    )
    lines = out.getvalue().splitlines()
    hourly = [line for line in lines if line.startswith("  hour ")]  # each a line of its own
    assert [line[:12] for line in hourly] == ["  hour  0.01", "  hour  1.02"] * 2  # a line per simulated hour, per run
    assert not any("\r" in line for line in lines)
    (report,) = tmp_path.glob("simulation-*.md")  # rewritten as each run ends, under one name
    assert "| | Stockroom (dynamic safety stock) | naive baseline |" in report.read_text()


def test_an_unknown_safety_mode_is_refused_before_anything_runs():
    with pytest.raises(CommandError, match="Unknown --safety mode weekly: use dynamic, fixed, fixed-matched, none"):
        call_command("simulate", "--safety", "dynamic,weekly", stdout=io.StringIO())
