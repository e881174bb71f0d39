"""Prometheus metrics of supplier feeds: runs by status, rows quarantined, and feed age per supplier."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

FEED_RUNS = Counter("stockroom_supplier_feed_runs_total", "Supplier feed runs by outcome.", ["supplier", "status"])
# Named ..._rows_rejected_total before the rows were called quarantined everywhere (docs/configuration.md).
ROWS_QUARANTINED = Counter("stockroom_supplier_feed_rows_quarantined_total", "Feed rows quarantined.", ["supplier"])


def feed_run_recorded(*, supplier: str, status: str, quarantined: int) -> None:
    FEED_RUNS.labels(supplier=supplier, status=status).inc()
    if quarantined:
        ROWS_QUARANTINED.labels(supplier=supplier).inc(quarantined)


class FeedAgeCollector(Collector):
    """Feed age is read from the database at scrape time, so every process reports the same truth."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Without describe() the registry would call collect(), querying the database at start-up.
        yield GaugeMetricFamily("stockroom_supplier_feed_age_seconds", "", labels=["supplier"])
        yield GaugeMetricFamily("stockroom_supplier_feed_stale", "", labels=["supplier"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from apps.suppliers.selectors import feed_freshness

        age = GaugeMetricFamily(
            "stockroom_supplier_feed_age_seconds", "Seconds since the last good feed.", labels=["supplier"]
        )
        stale = GaugeMetricFamily(
            "stockroom_supplier_feed_stale", "1 when the feed is past its max age.", labels=["supplier"]
        )
        try:
            rows = feed_freshness()
        except Exception:  # a scrape must not fail because the database is briefly away
            rows = []
        for row in rows:
            if row["age_minutes"] is not None:
                age.add_metric([row["supplier"]], row["age_minutes"] * 60)
            stale.add_metric([row["supplier"]], 1.0 if row["stale"] else 0.0)
        yield age
        yield stale


_registered = False


def register_collectors() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(FeedAgeCollector())
        _registered = True
