"""Ledger reconciliation: the levels are denormalised counters, the ledger is the truth behind them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
from django.db import connection, transaction

from apps.catalog import metrics
from apps.catalog.locks import reconcile_lock
from apps.catalog.models import Incident
from apps.catalog.services.incidents import incident_open

log = structlog.get_logger("stockroom.reconcile")

# One statement, so levels and ledger sums come from the same snapshot: every writer changes
# both in one transaction, so any difference seen here is real drift, not a write in flight.
RECONCILE_SQL = """
WITH ledger AS (
    SELECT item_id, location_id, SUM(on_hand_delta) AS on_hand, SUM(reserved_delta) AS reserved
      FROM catalog_movement
     WHERE %(all)s OR (item_id, location_id) IN (SELECT * FROM unnest(%(items)s::bigint[], %(locations)s::bigint[]))
     GROUP BY item_id, location_id
), levels AS (
    SELECT item_id, location_id, on_hand, reserved
      FROM catalog_stocklevel
     WHERE %(all)s OR (item_id, location_id) IN (SELECT * FROM unnest(%(items)s::bigint[], %(locations)s::bigint[]))
), compared AS (
    SELECT COALESCE(lv.item_id, lg.item_id) AS item_id, COALESCE(lv.location_id, lg.location_id) AS location_id,
           COALESCE(lv.on_hand, 0) AS level_on_hand, COALESCE(lv.reserved, 0) AS level_reserved,
           COALESCE(lg.on_hand, 0) AS ledger_on_hand, COALESCE(lg.reserved, 0) AS ledger_reserved
      FROM levels lv
      FULL OUTER JOIN ledger lg ON lg.item_id = lv.item_id AND lg.location_id = lv.location_id
)
SELECT count(*),
       COALESCE(json_agg(json_build_array(c.item_id, c.location_id, i.sku, loc.code, c.level_on_hand, c.level_reserved,
                                          c.ledger_on_hand, c.ledger_reserved)
                ORDER BY c.item_id, c.location_id)
                FILTER (WHERE c.level_on_hand <> c.ledger_on_hand OR c.level_reserved <> c.ledger_reserved), '[]')
  FROM compared c
  JOIN catalog_item i ON i.id = c.item_id
  JOIN catalog_location loc ON loc.id = c.location_id
"""


@dataclass(frozen=True)
class Drift:
    item_id: int
    location_id: int
    sku: str
    location: str
    level_on_hand: int
    level_reserved: int
    ledger_on_hand: int
    ledger_reserved: int

    def describe(self) -> str:
        return (
            f"{self.sku}@{self.location}: level on_hand {self.level_on_hand} reserved {self.level_reserved}, "
            f"ledger sums to on_hand {self.ledger_on_hand} reserved {self.ledger_reserved}"
        )


@dataclass
class ReconcileReport:
    pairs_checked: int
    drifts: list[Drift] = field(default_factory=list)
    incidents_opened: list[int] = field(default_factory=list)
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.drifts

    def lines(self) -> list[str]:
        outcome = "no drift."
        if not self.ok:
            outcome = f"{len(self.drifts)} drifting, {len(self.incidents_opened)} new incident(s)."
        head = f"Checked {self.pairs_checked} stock level(s) against the ledger in {self.duration_ms:.0f} ms: {outcome}"
        return [head, *(f"  DRIFT {drift.describe()}" for drift in self.drifts)]


def ledger_reconcile(*, pairs: Iterable[tuple[int, int]] | None = None) -> ReconcileReport:
    """Compare SUM(movements) with every level (or only these (item_id, location_id) pairs).

    Drift opens one ``ledger_drift`` incident per pair while an earlier one is still open, and
    sets the ``stockroom_ledger_drift_pairs`` gauge (only for full runs, which see every pair).
    """
    started = time.perf_counter()
    wanted = sorted(set(pairs)) if pairs is not None else None
    params: dict[str, Any] = {
        "all": wanted is None,
        "items": [i for i, _ in wanted or []],
        "locations": [loc for _, loc in wanted or []],
    }
    with transaction.atomic():
        reconcile_lock()
        with connection.cursor() as cursor:
            cursor.execute(RECONCILE_SQL, params)
            checked, raw = cursor.fetchone()
        rows = json.loads(raw) if isinstance(raw, str) else raw
        drifts = [Drift(*row) for row in rows]
        report = ReconcileReport(pairs_checked=int(checked), drifts=drifts)
        if drifts:
            already_open = set(
                Incident.objects.filter(
                    kind=Incident.Kind.LEDGER_DRIFT,
                    status=Incident.Status.OPEN,
                    item_id__in=sorted({d.item_id for d in drifts}),
                ).values_list("item_id", "location_id")
            )
            for drift in drifts:
                if (drift.item_id, drift.location_id) in already_open:
                    continue
                incident = incident_open(
                    kind=Incident.Kind.LEDGER_DRIFT,
                    item_id=drift.item_id,
                    location_id=drift.location_id,
                    shortfall=max(0, drift.level_on_hand - drift.ledger_on_hand),
                    reference=f"drift:{drift.sku}@{drift.location}",
                    detail=drift.describe(),
                )
                report.incidents_opened.append(incident.pk)
    report.duration_ms = (time.perf_counter() - started) * 1000
    if wanted is None:
        metrics.LEDGER_DRIFT_PAIRS.set(len(drifts))
        metrics.LEDGER_RECONCILED_AT.set(time.time())
    log.info(
        "ledger_reconciled",
        pairs=report.pairs_checked,
        drifting=len(drifts),
        incidents=len(report.incidents_opened),
        duration_ms=round(report.duration_ms, 1),
    )
    return report
