"""Sync metrics on /metrics, shared by every worker process through Redis.

Workers record push outcomes into Redis hashes (one pipeline per push); the web process
exposes them with a collector that also reads queue depth and dead letters from
PostgreSQL at scrape time. So the figures are right whatever the number of workers and
machines, without a multiprocess directory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import REGISTRY, Collector

from apps.channels.conf import redis_key

log = structlog.get_logger("stockroom.sync")

LATENCY_BUCKETS: tuple[float, ...] = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
COUNTERS = ("requests", "updates", "throttled", "failures", "dead")


def _bucket_field(value: float) -> str:
    for bound in LATENCY_BUCKETS:
        if value <= bound:
            return repr(float(bound))
    return "+Inf"


def push_record(
    *,
    channel_code: str,
    latencies: Sequence[tuple[int, float]] = (),
    requests: int = 0,
    updates: int = 0,
    throttled: int = 0,
    failures: int = 0,
    dead: int = 0,
) -> None:
    """Count one push outcome; ``latencies`` are (tier, seconds from change to accepted push)."""
    from apps.channels.limits import redis_client

    try:
        pipe = redis_client().pipeline(transaction=False)
        counts = {"requests": requests, "updates": updates, "throttled": throttled, "failures": failures, "dead": dead}
        for field, amount in counts.items():
            if amount:
                pipe.hincrby(redis_key("m", "push", channel_code), field, amount)
        for tier, seconds in latencies:
            key = redis_key("m", "latency", channel_code, tier)
            pipe.hincrby(key, _bucket_field(seconds), 1)
            pipe.hincrbyfloat(key, "sum", seconds)
            pipe.hincrby(key, "count", 1)
        pipe.execute()
    except Exception as err:  # metrics never break a push
        log.warning("sync_metrics_failed", error=str(err))


def push_totals(channel_codes: Iterable[str]) -> dict[str, dict[str, int]] | None:
    """Per channel code: push requests, updates, throttled answers, failures and dead letters counted so far
    (every worker's, from Redis). None when Redis cannot be read."""
    from apps.channels.limits import redis_client

    codes = list(channel_codes)
    try:
        pipe = redis_client().pipeline(transaction=False)
        for code in codes:
            pipe.hgetall(redis_key("m", "push", code))
        answers = pipe.execute()
    except Exception as err:
        log.warning("sync_metrics_unavailable", error=str(err))
        return None
    totals = {}
    for code, raw in zip(codes, answers, strict=True):
        counts = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        totals[code] = {name: counts.get(name, 0) for name in COUNTERS}
    return totals


def _cumulative(raw: dict[str, str]) -> list[tuple[str, float]]:
    buckets, running = [], 0.0
    for bound in LATENCY_BUCKETS:
        running += float(raw.get(repr(float(bound)), 0))
        buckets.append((repr(float(bound)), running))
    running += float(raw.get("+Inf", 0))
    buckets.append(("+Inf", running))
    return buckets


class SyncCollector(Collector):
    def describe(self) -> Iterator[Metric]:
        """Names only, so that registering never touches the database or Redis."""
        yield GaugeMetricFamily("stockroom_sync_queue_depth", "", labels=["channel", "tier"])
        yield GaugeMetricFamily("stockroom_sync_dead_letters", "", labels=["channel"])
        for name in ("pushes", "updates", "throttled", "failures", "dead_lettered"):
            yield CounterMetricFamily(f"stockroom_sync_{name}", "", labels=["channel"])
        yield HistogramMetricFamily("stockroom_sync_latency_seconds", "", labels=["channel", "tier"])

    def collect(self) -> Iterator[Metric]:
        from django.db import connection

        from apps.channels.limits import redis_client

        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    """
                    SELECT c.code, w.state, w.priority, COUNT(w.id)
                      FROM channels_channel c
                      LEFT JOIN channels_syncwork w ON w.channel_id = c.id
                     GROUP BY c.code, w.state, w.priority
                    """
                )
                rows = cursor.fetchall()
        except Exception as err:
            log.warning("sync_metrics_unavailable", error=str(err))
            return
        codes = sorted({code for code, *_ in rows})
        depth = GaugeMetricFamily(
            "stockroom_sync_queue_depth", "Pending sync work (one row per listing).", labels=["channel", "tier"]
        )
        dead = GaugeMetricFamily("stockroom_sync_dead_letters", "Sync work in the dead letter.", labels=["channel"])
        dead_by_channel = dict.fromkeys(codes, 0)
        depth_by = {(code, tier): 0 for code in codes for tier in (1, 2, 3)}
        for code, state, priority, count in rows:
            if state == "pending":
                depth_by[(code, priority)] += count
            elif state == "dead":
                dead_by_channel[code] += count
        for (code, tier), count in sorted(depth_by.items()):
            depth.add_metric([code, str(tier)], count)
        for code, count in sorted(dead_by_channel.items()):
            dead.add_metric([code], count)
        yield depth
        yield dead
        yield from self._from_redis(codes, redis_client)

    def _from_redis(self, codes: Iterable[str], redis_client: object) -> Iterator[Metric]:
        codes = list(codes)
        try:
            pipe = redis_client().pipeline(transaction=False)  # type: ignore[operator]
            for code in codes:
                pipe.hgetall(redis_key("m", "push", code))
                for tier in (1, 2, 3):
                    pipe.hgetall(redis_key("m", "latency", code, tier))
            results = iter(pipe.execute())
        except Exception as err:
            log.warning("sync_metrics_unavailable", error=str(err))
            return
        families = {
            "requests": CounterMetricFamily("stockroom_sync_pushes", "Push requests sent.", labels=["channel"]),
            "updates": CounterMetricFamily("stockroom_sync_updates", "Listing updates pushed.", labels=["channel"]),
            "throttled": CounterMetricFamily(
                "stockroom_sync_throttled", "429 responses received from the channel.", labels=["channel"]
            ),
            "failures": CounterMetricFamily(
                "stockroom_sync_failures", "Failed pushes (5xx, errors).", labels=["channel"]
            ),
            "dead": CounterMetricFamily(
                "stockroom_sync_dead_lettered", "Listings moved to the dead letter.", labels=["channel"]
            ),
        }
        latency = HistogramMetricFamily(
            "stockroom_sync_latency_seconds", "From a change to its accepted push.", labels=["channel", "tier"]
        )
        for code in codes:
            counts = {k.decode() if isinstance(k, bytes) else k: v for k, v in next(results).items()}
            for field, family in families.items():
                family.add_metric([code], float(counts.get(field, 0)))
            for tier in (1, 2, 3):
                raw = {
                    (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                    for k, v in next(results).items()
                }
                latency.add_metric([code, str(tier)], _cumulative(raw), sum_value=float(raw.get("sum", 0)))
        yield from families.values()
        yield latency


_registered = False


def register() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(SyncCollector())
        _registered = True
