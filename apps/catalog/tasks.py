"""Thin Celery tasks of the catalog: they call a service and nothing else."""

from __future__ import annotations

from celery import shared_task

from apps.catalog.services.reconcile import ledger_reconcile


@shared_task(name="catalog.ledger_reconcile", acks_late=True, time_limit=30 * 60, soft_time_limit=25 * 60)
def ledger_reconcile_task() -> dict[str, int]:
    """Nightly (and on demand): compare the ledger with the levels; drift becomes incidents and a metric."""
    report = ledger_reconcile()
    return {"pairs_checked": report.pairs_checked, "drifting": len(report.drifts)}
