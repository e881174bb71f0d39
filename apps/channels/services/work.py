"""Sync work as rows: enqueue (coalescing upsert), dispatch after commit, sweep, dead-letter retry."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
from django.db import connection, transaction
from django.utils import timezone

from apps.catalog.signals import Tier
from apps.catalog.stock.changes import StatementPart
from apps.channels import limits
from apps.channels.conf import sync_setting
from apps.channels.locks import sync_work_for_update
from apps.channels.models import Channel, SyncWork
from apps.channels.selectors import LISTINGS_REACHED_SQL, listings_availability

log = structlog.get_logger("stockroom.sync")

# Where the reached listings come from; each yields (listing_id, channel_id) of listings on
# active channels: active listings only, except when listings are named (an ended listing is
# pushed once more, as 0).
# A move also reaches listings of its items that an incident held at 0, wherever they sell from:
# the move may be what removed the incident's cause (docs/architecture.md, "Limits and edges").
_AFFECTED_BY_PAIRS = (
    "SELECT listing_id, channel_id FROM ("
    + LISTINGS_REACHED_SQL.format(
        moved="unnest(%(items)s::bigint[], %(locations)s::bigint[]) AS m(item_id, location_id)"
    )
    + """) AS reached WHERE live
    UNION
    SELECT l.id, l.channel_id
      FROM catalog_productcomponent pc
      JOIN channels_listing l ON l.product_id = pc.product_id AND l.zeroed_by_incident AND l.is_active
      JOIN channels_channel c ON c.id = l.channel_id AND c.is_active
     WHERE pc.item_id = ANY(%(items)s::bigint[])"""
)
_AFFECTED_BY_ITEMS = """
    SELECT DISTINCT l.id AS listing_id, l.channel_id
      FROM catalog_productcomponent pc
      JOIN channels_listing l ON l.product_id = pc.product_id AND l.is_active
      JOIN channels_channel c ON c.id = l.channel_id AND c.is_active
     WHERE pc.item_id = ANY(%(items)s::bigint[])
"""
_AFFECTED_BY_PRODUCTS = """
    SELECT l.id AS listing_id, l.channel_id
      FROM channels_listing l
      JOIN channels_channel c ON c.id = l.channel_id AND c.is_active
     WHERE l.product_id = ANY(%(products)s::bigint[]) AND l.is_active
"""
_AFFECTED_BY_LISTINGS = """
    SELECT l.id AS listing_id, l.channel_id
      FROM channels_listing l
      JOIN channels_channel c ON c.id = l.channel_id AND c.is_active
     WHERE l.id = ANY(%(listings)s::bigint[])
"""
_AFFECTED_BY_CHANNELS = """
    SELECT l.id AS listing_id, l.channel_id
      FROM channels_listing l
      JOIN channels_channel c ON c.id = l.channel_id AND c.is_active
     WHERE l.channel_id = ANY(%(channels)s::bigint[]) AND l.is_active
"""

# One statement: the most urgent priority wins, the earliest enqueue time is kept, and the
# version counts changes so that a pusher never deletes work it has not pushed. Rows are
# taken in listing order so that concurrent writers lock them in the same order. ``{source}``
# gives listing_id and channel_id; ``{repush}`` is a parameter or a literal. It is also our part
# of the stock owner's single-statement writes (``STATEMENT_PART``).
SYNC_WORK_UPSERT = """
INSERT INTO channels_syncwork AS w
       (listing_id, channel_id, priority, reason, enqueued_at, changed_at, version, attempts,
        next_attempt_at, state, repush, last_error, channel_failure)
SELECT a.listing_id, a.channel_id, %(priority)s, %(reason)s, now(), now(), 1, 0,
       now(), 'pending', {repush}, '', false
  FROM ({source}) AS a
 ORDER BY a.listing_id
    ON CONFLICT (listing_id) DO UPDATE
   SET priority = LEAST(w.priority, EXCLUDED.priority),
       reason = CASE WHEN EXCLUDED.priority < w.priority THEN EXCLUDED.reason ELSE w.reason END,
       enqueued_at = LEAST(w.enqueued_at, EXCLUDED.enqueued_at),
       changed_at = GREATEST(w.changed_at, EXCLUDED.changed_at),
       version = w.version + 1,
       repush = w.repush OR EXCLUDED.repush,
       -- a new change to a dead letter is pushed with fresh attempts (DeadLetterRecord keeps the death)
       attempts = CASE WHEN w.state = 'dead' THEN 0 ELSE w.attempts END,
       next_attempt_at = CASE WHEN w.state = 'dead' THEN now() ELSE w.next_attempt_at END,
       channel_failure = w.channel_failure AND w.state <> 'dead',
       state = 'pending'
RETURNING w.listing_id, w.channel_id, w.priority
"""

# Our part of the stock owner's single-statement writes (an order's fast path): the listings the move
# reaches and their sync work, atomically with it; the receiver gets both arrays and dispatches.
_REACHED_BY_MOVED = LISTINGS_REACHED_SQL.format(moved="moved AS m")
_SYNC_REACHED = SYNC_WORK_UPSERT.format(
    source="SELECT listing_id, channel_id FROM channels_reached WHERE live", repush="false"
)
STATEMENT_PART = StatementPart(
    name="channels",
    ctes=f"channels_reached AS ({_REACHED_BY_MOVED}\n), channels_synced AS ({_SYNC_REACHED}\n)",
    results=(
        "(SELECT coalesce(array_agg(listing_id ORDER BY listing_id), '{}') FROM channels_reached)",
        "(SELECT coalesce(array_agg(DISTINCT channel_id), '{}') FROM channels_synced)",
    ),
)

# A listing reaching 0 is as urgent as a sale: promote those the channel still shows as positive.
_PROMOTE = """
UPDATE channels_syncwork AS w
   SET priority = 1, reason = %(reason)s
  FROM channels_listing l
 WHERE w.listing_id = l.id AND w.listing_id = ANY(%(listings)s::bigint[]) AND w.priority > 1
   AND (l.last_pushed_qty IS NULL OR l.last_pushed_qty > 0)
RETURNING w.channel_id
"""


@dataclass(frozen=True)
class Enqueued:
    listings: int
    channels_by_priority: dict[int, list[int]]


def sync_work_enqueue(
    *,
    priority: int,
    reason: str,
    pairs: Sequence[tuple[int, int]] | None = None,
    item_ids: Sequence[int] | None = None,
    product_ids: Sequence[int] | None = None,
    listing_ids: Sequence[int] | None = None,
    channel_ids: Sequence[int] | None = None,
    repush: bool = False,
) -> Enqueued:
    """Upsert one pending row for every listing the change reaches, in the caller's transaction.

    Give exactly one source: (item, location) pairs that moved (through every product that
    contains the item, bundles and multipacks included, in every channel selling from that
    location), item ids (every channel), product ids, listing ids, or channel ids. Dispatch
    of urgent work happens after commit.
    """
    sources = [
        (pairs, _AFFECTED_BY_PAIRS),
        (item_ids, _AFFECTED_BY_ITEMS),
        (product_ids, _AFFECTED_BY_PRODUCTS),
        (listing_ids, _AFFECTED_BY_LISTINGS),
        (channel_ids, _AFFECTED_BY_CHANNELS),
    ]
    given = [(values, sql) for values, sql in sources if values is not None]
    if len(given) != 1:
        raise ValueError("sync_work_enqueue needs exactly one source of listings")
    values, source = given[0]
    if not values:
        return Enqueued(0, {})
    priority = int(Tier(priority))
    moved = sorted(set(pairs or []))
    params: dict[str, Any] = {
        "priority": priority,
        "reason": reason[:60],
        "repush": repush,
        "items": [item for item, _ in moved] if pairs is not None else sorted(set(item_ids or [])),
        "locations": [loc for _, loc in moved],
        "products": sorted(set(product_ids or [])),
        "listings": sorted(set(listing_ids or [])),
        "channels": sorted(set(channel_ids or [])),
    }
    # No savepoint: callers are inside their own transaction (a receiver of stock_changed).
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(SYNC_WORK_UPSERT.format(source=source, repush="%(repush)s"), params)
        rows = cursor.fetchall()
        by_priority: dict[int, set[int]] = {}
        for _listing, channel, prio in rows:
            by_priority.setdefault(prio, set()).add(channel)
        calm = [listing for listing, _channel, prio in rows if prio > 1]
        if calm:
            reaching_zero = [a.listing_id for a in listings_availability(calm).values() if a.available == 0]
            if reaching_zero:
                cursor.execute(_PROMOTE, {"listings": reaching_zero, "reason": "reached_zero"})
                by_priority.setdefault(1, set()).update(channel for (channel,) in cursor.fetchall())
    channels_by_priority = {prio: sorted(channels) for prio, channels in by_priority.items()}
    _dispatch_after_commit(channels_by_priority)
    return Enqueued(len(rows), channels_by_priority)


def _dispatch_after_commit(channels_by_priority: dict[int, list[int]]) -> None:
    urgent = {prio: channels for prio, channels in channels_by_priority.items() if prio <= Tier.MANUAL}
    if urgent:
        transaction.on_commit(partial(sync_dispatch, channels_by_priority=urgent))


def sync_dispatch(*, channels_by_priority: dict[int, list[int]]) -> None:
    """After commit: tier 1 goes to the channel's pusher at once, tier 2 after its short coalescing delay.

    Tier 3 waits for the beat sweep. A broker or Redis outage here loses nothing: the rows
    are committed and the sweep finds them.
    """
    kicks = sync_kicks(channels_by_priority)
    try:
        for channel_id, countdown in kicks:
            channel_kick(channel_id=channel_id, countdown=countdown)
    except Exception as err:  # the sweep is the safety net; a commit never fails because of dispatch
        log.warning("sync_dispatch_failed", error=str(err))


def sync_kicks(channels_by_priority: dict[int, list[int]]) -> list[tuple[int, float]]:
    """The pushes ``sync_dispatch`` queues, as (channel_id, countdown): tier 1 at once, tier 2 after its delay."""
    tier2_delay = float(sync_setting("SYNC_TIER2_DELAY_S"))
    urgent = set(channels_by_priority.get(Tier.SALE, []))
    return [(channel_id, 0.0) for channel_id in sorted(urgent)] + [
        (channel_id, tier2_delay) for channel_id in sorted(set(channels_by_priority.get(Tier.MANUAL, [])) - urgent)
    ]


_SHARDS: dict[int, str] = {}


def channel_queue(channel_id: int) -> str:
    """The channel's shard queue, sync.<n>, from the stable hash of its code."""
    queue = _SHARDS.get(channel_id)
    if queue is None:
        channel = Channel.objects.only("code").get(pk=channel_id)
        queue = _SHARDS[channel_id] = f"sync.{channel.shard}"
    return queue


def _claim_s() -> float:
    """How long a queued push task's claim stands: a task that a worker took and never started (the worker
    cut off from the network holds its message until the broker's visibility timeout) stops blocking the
    channel's kicks after it."""
    return float(sync_setting("SYNC_KICK_CLAIM_S"))


def channel_kick(*, channel_id: int, countdown: float = 0.0, pipe: Any = None) -> bool:
    """Queue a push task for the channel unless one is already queued and not yet started.

    With ``pipe``, only the claim is queued on that Redis pipeline; ``channel_kicked`` then queues
    the task when the pipeline's answer to it says claimed.
    """
    delayed = countdown > 0
    if pipe is not None:
        limits.kick_claim(channel_id, delayed=delayed, ttl_s=countdown + _claim_s(), pipe=pipe)
        return False
    if not limits.kick_claim(channel_id, delayed=delayed, ttl_s=countdown + _claim_s()):
        return False
    channel_kicked(channel_id=channel_id, countdown=countdown)
    return True


def channel_kicked(*, channel_id: int, countdown: float = 0.0) -> None:
    """Queue the push task of a claimed kick."""
    from apps.channels.tasks import channel_push

    delayed = countdown > 0
    channel_push.apply_async(
        args=[channel_id],
        kwargs={"kicked": "delayed" if delayed else "now"},
        queue=channel_queue(channel_id),
        countdown=countdown or None,
    )


_DUE = """
SELECT w.channel_id, COUNT(*)
  FROM channels_syncwork w
  JOIN channels_channel c ON c.id = w.channel_id AND c.state = 'live'
 WHERE w.state = 'pending' AND w.next_attempt_at <= clock_timestamp()
   AND (w.priority = 1
        OR (w.priority = 2 AND w.enqueued_at <= clock_timestamp() - make_interval(secs => %(tier2)s))
        OR w.enqueued_at <= clock_timestamp() - make_interval(secs => %(tier3)s))
 GROUP BY w.channel_id
"""


def sync_sweep() -> dict[int, int]:
    """Beat: queue a push for every live channel with due work (tier 3 batches, retries, anything missed).

    Channels in ``setup`` or ``paused`` keep their work queued and are not kicked; going live pushes it all.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _DUE,
            {"tier2": float(sync_setting("SYNC_TIER2_DELAY_S")), "tier3": float(sync_setting("SYNC_TIER3_BATCH_S"))},
        )
        due = dict(cursor.fetchall())
    probed = _probe_failed_channels(exclude=sorted(due))
    for channel_id in sorted(set(due) | set(probed)):
        channel_kick(channel_id=channel_id)
    if due or probed:
        log.debug("sync_sweep", channels=len(due), listings=sum(due.values()), probes=len(probed))
    return due


# A channel whose whole platform failed until all its work died has nothing left to push, so nothing
# would notice the platform answering again: one dead row per such channel is revived as a probe, on
# its last attempt (a failing probe dies again at once and adds no new dead letter record).
_PROBE_CANDIDATES = """
SELECT DISTINCT ON (w.channel_id) w.listing_id
  FROM channels_syncwork w
 WHERE w.state = 'dead' AND w.channel_failure AND w.next_attempt_at <= clock_timestamp()
   AND NOT (w.channel_id = ANY(%(exclude)s::bigint[]))
   AND NOT EXISTS (SELECT 1 FROM channels_syncwork p WHERE p.channel_id = w.channel_id AND p.state = 'pending')
 ORDER BY w.channel_id, w.next_attempt_at
"""


def _probe_failed_channels(*, exclude: Sequence[int]) -> list[int]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_PROBE_CANDIDATES, {"exclude": list(exclude)})
        probes = sync_work_for_update([listing for (listing,) in cursor.fetchall()])
        if not probes:
            return []
        cursor.execute(
            """
            UPDATE channels_syncwork
               SET state = 'pending', attempts = %s, next_attempt_at = clock_timestamp(), repush = true
             WHERE listing_id = ANY(%s::bigint[]) AND state = 'dead'
            RETURNING channel_id
            """,
            [max(0, int(sync_setting("SYNC_MAX_ATTEMPTS")) - 1), probes],
        )
        return sorted({channel for (channel,) in cursor.fetchall()})


def channel_recovered(*, channel_id: int, pushed_listing_ids: Sequence[int]) -> int:
    """The channel's platform accepted a push: what failed with the whole channel is due again now.

    Called by the pusher after an accepted push. Work that backs off because the whole platform
    failed is due at once, and dead letters that died that way get fresh attempts (half-open: the
    push that just succeeded was the probe; closed: the rest follows in the same pusher run). Work
    that failed on its own (a listing the platform refuses) keeps its backoff. Open dead letter
    records of the pushed listings are marked healed. Returns how many rows became due.
    """
    failing = """
        channel_id = %s AND channel_failure AND (state = 'dead' OR next_attempt_at > clock_timestamp())
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT listing_id FROM channels_syncwork WHERE {failing}", [channel_id])
        candidates = [listing for (listing,) in cursor.fetchall()]
        revived = 0
        if candidates:
            sync_work_for_update(candidates)  # listing order, like every writer of sync work
            cursor.execute(
                f"""
                UPDATE channels_syncwork
                   SET state = 'pending', next_attempt_at = clock_timestamp(), channel_failure = false,
                       attempts = CASE WHEN state = 'dead' THEN 0 ELSE attempts END,
                       priority = CASE WHEN state = 'dead' THEN LEAST(priority, 2) ELSE priority END,
                       repush = repush OR state = 'dead'
                 WHERE listing_id = ANY(%s::bigint[]) AND {failing}
                """,
                [candidates, channel_id],
            )
            revived = cursor.rowcount
        cursor.execute(
            "UPDATE channels_deadletterrecord SET healed_at = now()"
            " WHERE listing_id = ANY(%s::bigint[]) AND healed_at IS NULL",
            [list(pushed_listing_ids)],
        )
    if revived:
        log.info("channel_recovered", channel=channel_id, listings_due_again=revived)
    return revived


@transaction.atomic
def dead_letters_retry(*, work_ids: Iterable[int]) -> int:
    """Give dead letters a fresh set of attempts, pushed at tier 2 (staff asked for it)."""
    ids = sorted(set(work_ids))
    rows = list(SyncWork.objects.filter(pk__in=ids, state=SyncWork.State.DEAD).values_list("pk", "channel_id"))
    if not rows:
        return 0
    sync_work_for_update(SyncWork.objects.filter(pk__in=ids).values_list("listing_id", flat=True))
    SyncWork.objects.filter(pk__in=[pk for pk, _ in rows], state=SyncWork.State.DEAD).update(
        state=SyncWork.State.PENDING,
        channel_failure=False,
        attempts=0,
        priority=Tier.MANUAL,
        repush=True,
        last_error="",
        next_attempt_at=timezone.now(),
    )
    channels = sorted({channel for _, channel in rows})
    transaction.on_commit(partial(sync_dispatch, channels_by_priority={Tier.MANUAL: channels}))
    log.info("dead_letters_retried", count=len(rows))
    return len(rows)
