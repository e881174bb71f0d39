"""The simulation report: a Markdown table for the README and an HTML page with charts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from django.template.loader import render_to_string

from apps.catalog.models import Incident
from apps.staff.charts import Series, bar_chart, line_chart
from sandbox.demo.simulation.engine import CAUSES, Outcome


def _interval(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _pct(value: float) -> str:
    return f"{value * 100:.3f} %"


def rows(outcomes: list[Outcome]) -> list[tuple[str, list[str]]]:
    """The comparison, one row per figure, one column per system."""
    table: list[tuple[str, list[str]]] = [
        ("online orders offered", [f"{o.online_orders:,}" for o in outcomes]),
        ("accepted", [f"{o.accepted:,}" for o in outcomes]),
        ("refused or shown sold out", [f"{o.refused:,}" for o in outcomes]),
        ("orders accepted beyond stock", [f"{o.oversold_orders:,}" for o in outcomes]),
        ("oversell rate (of accepted)", [_pct(o.oversell_rate) for o in outcomes]),
        ("oversold units, all causes", [f"{o.oversold_total:,}" for o in outcomes]),
    ]
    for cause in CAUSES.values():
        table.append((f"- {cause}", [f"{o.oversold_units.get(cause, 0):,}" for o in outcomes]))
    table += [
        # The share safety stock answers for: cashiers cannot be stopped, so this is its miss rate.
        ("till-sale shortfalls, % of online orders", [_pct(o.till_shortfall_rate) for o in outcomes]),
        ("store sales recorded", [f"{o.store_sales:,}" for o in outcomes]),
        ("turned away although shelves had it", [f"{o.refused_with_stock:,}" for o in outcomes]),
        ("units held back by store safety stock (average)", [f"{o.safety_hidden_units:,}" for o in outcomes]),
        (
            "units held back by supplier safety stock (average)",
            [f"{o.supplier_safety_hidden_units:,}" for o in outcomes],
        ),
        ("what channels show is brought up to date every", [_interval(o.sync_interval_s) for o in outcomes]),
        ("incidents opened for staff", [f"{sum(o.incidents.values()):,}" for o in outcomes]),
    ]
    for kind, label in Incident.Kind.choices:
        if any(o.incidents.get(kind) for o in outcomes):
            table.append((f"- {label}", [f"{o.incidents.get(kind, 0):,}" for o in outcomes]))
    extra_keys = sorted({key for o in outcomes for key in o.extra})
    for key in extra_keys:
        table.append((key, [str(o.extra.get(key, "")) for o in outcomes]))
    table.append(("wall time", [f"{o.wall_seconds:,.0f} s" for o in outcomes]))
    return table


def markdown(outcomes: list[Outcome], *, seed: int, hours: float, command: str) -> str:
    header = "| | " + " | ".join(o.system for o in outcomes) + " |"
    lines = [
        f"Simulated {hours:g} h, seed {seed}: `{command}`",
        "",
        header,
        "|---|" + "---:|" * len(outcomes),
        *(f"| {name} | " + " | ".join(values) + " |" for name, values in rows(outcomes)),
    ]
    return "\n".join(lines) + "\n"


def charts(outcomes: list[Outcome]) -> list[str]:
    timeline = line_chart(
        series=[Series(o.system, [(h, float(u)) for h, u in o.timeline], step=True) for o in outcomes],
        title="Oversold units over the day (cumulative)",
        x_label="hour of the simulated day",
        y_label="units",
    )
    rates = bar_chart(
        bars=[(o.system, round(o.oversell_rate * 100, 3)) for o in outcomes],
        title="Orders accepted beyond stock, % of accepted",
        unit="%",
    )
    return [str(timeline), str(rates)]


def write(
    outcomes: list[Outcome], *, seed: int, hours: float, command: str, directory: Path, stamp: str | None = None
) -> tuple[Path, Path]:
    """Write the report pair; the same stamp writes over the same files."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    md = directory / f"simulation-{stamp}-seed{seed}.md"
    html = md.with_suffix(".html")
    md.write_text(markdown(outcomes, seed=seed, hours=hours, command=command))
    html.write_text(
        render_to_string(
            "demo/report.html",
            {
                "outcomes": outcomes,
                "rows": rows(outcomes),
                "charts": charts(outcomes),
                "seed": seed,
                "hours": hours,
                "command": command,
                "generated": datetime.now(UTC),
            },
        )
    )
    return md, html
