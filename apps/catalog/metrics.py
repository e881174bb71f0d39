"""Prometheus metrics of the stock core, exported at /metrics."""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import Counter, Gauge

MOVEMENTS_RECORDED = Counter("stockroom_movements_recorded", "Ledger movements committed, by kind.", ["kind"])
INCIDENTS_OPENED = Counter("stockroom_incidents_opened", "Incidents opened, by kind.", ["kind"])
LEDGER_DRIFT_PAIRS = Gauge(
    "stockroom_ledger_drift_pairs", "Stock levels whose ledger does not sum to them, at the last reconciliation."
)
LEDGER_RECONCILED_AT = Gauge(
    "stockroom_ledger_reconciled_timestamp_seconds", "When the ledger was last reconciled (Unix time)."
)


def movements_committed(kinds: list[str]) -> None:
    for kind, count in Tally(kinds).items():
        MOVEMENTS_RECORDED.labels(kind=kind).inc(count)


def incident_committed(kind: str) -> None:
    INCIDENTS_OPENED.labels(kind=kind).inc()
