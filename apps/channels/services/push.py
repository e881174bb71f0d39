"""Pushing: the quantity read at push time, in batches, under the channel's rate limit, with retries.

One pusher per channel at a time (a Redis lock its holder renews while it pushes). It loops while work is due: reads a
batch of due rows, computes their quantities in one query, drops those the channel
already shows, holds back raises while the channel has orders not yet imported, takes a
token from the channel's bucket, and hands the batch to the channel's connector
(``apps.channels.connectors``: our own push protocol, or a platform's API). The engine is
platform-blind; it acts on the connector's ``PushResult``:

- accepted: exactly those rows are deleted (version check) and the listing remembers the quantity;
- failed: an attempt is counted with exponential backoff (honouring Retry-After) and, after the
  last allowed one, the row moves to the dead letter;
- throttled: nothing was applied; the channel's bucket pauses and the rows wait, no attempt counted;
- mismatched (the platform's quantity was not what we last told it): never overwritten blindly.
  The listing remembers what the platform shows, the channel's orders count as pending from now
  (so raises wait for the order import, lowers still go out), and the row is pushed again with the
  new compare value.

A worker that dies mid-push loses nothing: rows are deleted only once the platform accepted them.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.db import connection, transaction
from django.utils import timezone

from apps.channels import limits, metrics
from apps.channels.conf import sync_setting
from apps.channels.connectors.base import (
    ChannelRef,
    Connector,
    ConnectorError,
    PlaceQuantity,
    PushResult,
    QuantityUpdate,
    location_map,
    retry_after_seconds,
)
from apps.channels.connectors.stockroom import SIGNATURE_HEADER, push_body, sign
from apps.channels.locks import sync_work_for_update
from apps.channels.models import Channel, Listing, SyncWork
from apps.channels.selectors import (
    listings_availability,
    listings_availability_by_place,
    listings_zeroed_by_incident,
)
from apps.channels.services.config import channel_watermark_set
from apps.channels.services.connection import channel_push_configured
from apps.channels.services.work import channel_kick, channel_recovered

log = structlog.get_logger("stockroom.sync")

# The push protocol's helpers live with its connector; these names stay importable from here.
__all__ = [
    "SIGNATURE_HEADER",
    "PlannedQuantity",
    "channel_push",
    "listings_push_plan",
    "push_body",
    "retry_after_seconds",
    "sign",
]

# Due rows first (most urgent, oldest first); the rest of the batch is filled with pending
# rows that are not due yet: they ride along in a request that goes out anyway, for free.
_DUE_ROWS = """
SELECT w.listing_id, w.version, w.priority, w.enqueued_at, w.repush, w.attempts, l.last_pushed_qty,
       l.external_id,
       (w.priority = 1
        OR (w.priority = 2 AND w.enqueued_at <= clock_timestamp() - make_interval(secs => %(tier2)s))
        OR w.enqueued_at <= clock_timestamp() - make_interval(secs => %(tier3)s)) AS due,
       l.pushed_places
  FROM channels_syncwork w
  JOIN channels_listing l ON l.id = w.listing_id
 WHERE w.channel_id = %(channel)s AND w.state = 'pending' AND w.next_attempt_at <= clock_timestamp()
 ORDER BY due DESC, w.priority, w.enqueued_at, w.listing_id
 LIMIT %(limit)s
"""


@dataclass(frozen=True)
class DueRow:
    listing_id: int
    version: int
    priority: int
    enqueued_at: datetime
    repush: bool
    attempts: int
    last_pushed_qty: int | None
    external_id: str
    due: bool
    pushed_places: dict[str, int] = field(default_factory=dict)


@dataclass
class Update:
    row: DueRow
    sku: str
    available: int
    zeroed: bool = False  # 0 because an incident's cause still holds, whatever the stock
    # On a connector that sets a quantity per platform location: what each one shows ({} otherwise).
    places: dict[str, int] = field(default_factory=dict)


@dataclass
class PushReport:
    channel_id: int
    busy: bool = False
    requests: int = 0
    updates: int = 0
    throttled: int = 0
    failures: int = 0
    skipped: int = 0
    held: int = 0
    dead: int = 0
    mismatched: int = 0
    follow_up_in: float | None = None
    errors: list[str] = field(default_factory=list)
    code: str = ""  # the channel's code, for the log line


def backoff_seconds(attempts: int) -> float:
    base, cap = float(sync_setting("SYNC_BACKOFF_BASE_S")), float(sync_setting("SYNC_BACKOFF_MAX_S"))
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.8, 1.2)


def channel_push(*, channel_id: int, kicked: str | None = None) -> PushReport:
    """Push every due listing of the channel, as the one pusher of that channel."""
    if kicked:
        limits.kick_clear(channel_id, delayed=kicked == "delayed")
    lock = limits.PusherLock(channel_id)
    if not lock.acquire():
        # The holder looks at this flag after it lets go, so this work is never stranded.
        limits.again_mark(channel_id)
        if not lock.acquire():
            # A live holder keeps renewing its lock; a dead one's lapses within SYNC_LOCK_TTL_S. Look again
            # then, so a channel whose pusher died is pushed as soon as its lock is free, not at the next sweep.
            channel_kick(channel_id=channel_id, countdown=lock.lapses_in() + 0.1)
            return PushReport(channel_id, busy=True)
    report = PushReport(channel_id)
    # Renewed while the push runs, at most as long as its task may (the slice, a request in flight, and the
    # task's margin, as apps.channels.tasks declares it).
    lock.keep(at_most_s=float(sync_setting("SYNC_PUSH_SLICE_S")) + float(sync_setting("SYNC_HTTP_TIMEOUT_S")) + 30)
    try:
        _push_while_due(channel_id, lock, report)
    finally:
        lock.release()
    if report.follow_up_in is not None:
        channel_kick(channel_id=channel_id, countdown=report.follow_up_in)
    elif limits.again_take(channel_id):
        channel_kick(channel_id=channel_id)
    if report.requests or report.failures:
        log.info(
            "channel_pushed",
            channel=report.code or channel_id,
            requests=report.requests,
            updates=report.updates,
            throttled=report.throttled,
            failures=report.failures,
            held=report.held,
            dead=report.dead,
        )
    return report


def _push_while_due(channel_id: int, lock: limits.PusherLock, report: PushReport) -> None:
    deadline = time.monotonic() + float(sync_setting("SYNC_PUSH_SLICE_S"))
    inline_wait = float(sync_setting("SYNC_INLINE_WAIT_S"))
    while True:
        if time.monotonic() > deadline:
            report.follow_up_in = 0.0  # give the worker slot back; a fresh task carries on
            return
        if not lock.held():  # lapsed while we could not renew it: another pusher may hold it now
            report.errors.append("pusher lock lost")
            return
        channel = Channel.objects.filter(pk=channel_id).first()
        ready = channel_push_configured(channel) if channel is not None else None
        if channel is None or ready is None:
            return
        report.code = channel.code
        connector, ref = ready
        batch_size = max(1, min(channel.batch_size, connector.max_batch))
        rows = _due_rows(channel, batch_size)
        if not rows:
            return
        if len(rows) < batch_size:
            age = (timezone.now() - min(row.enqueued_at for row in rows if row.due)).total_seconds()
            gather = float(sync_setting("SYNC_TIER1_GATHER_S"))
            if age < gather:
                time.sleep(gather - age)
                continue
        updates = _plan(channel, rows, report, connector)
        if not updates:
            continue
        bucket = limits.channel_bucket(channel)
        waited = False
        while (wait := bucket.take()) > 0:
            if wait > inline_wait:
                report.follow_up_in = wait
                return
            time.sleep(wait)
            waited = True
        if not lock.held():  # never a request after the lock may have passed to another pusher
            report.errors.append("pusher lock lost")
            return
        as_of = timezone.now()
        if waited:  # the quantity is the one at push time, not the one before the wait
            ids = [u.row.listing_id for u in updates]
            fresh, zeroed = listings_availability(ids), listings_zeroed_by_incident(ids)
            for update in updates:
                update.zeroed = update.row.listing_id in zeroed
                if update.zeroed:
                    update.available = 0
                elif update.row.listing_id in fresh:
                    update.available = _held_back(channel, update.row, fresh[update.row.listing_id].available)
            if connector.sets_places:
                _places_fill(channel, updates)
        _send(channel, connector, ref, updates, as_of, report)


def _due_rows(channel: Channel, batch_size: int) -> list[DueRow]:
    with connection.cursor() as cursor:
        cursor.execute(
            _DUE_ROWS,
            {
                "channel": channel.pk,
                "tier2": float(sync_setting("SYNC_TIER2_DELAY_S")),
                "tier3": float(sync_setting("SYNC_TIER3_BATCH_S")),
                "limit": batch_size,
            },
        )
        rows = [_due_row(row) for row in cursor.fetchall()]
    return rows if rows and rows[0].due else []


def _due_row(row: tuple[Any, ...]) -> DueRow:
    listing_id, version, priority, enqueued_at, repush, attempts, last_pushed_qty, external_id, due, places = row
    return DueRow(
        listing_id, version, priority, enqueued_at, repush, attempts, last_pushed_qty, external_id, due,
        pushed_places=_json_object(places),
    )  # fmt: skip


def _json_object(value: object) -> dict[str, int]:
    """A jsonb column read through the raw cursor (text with this driver's settings, or already decoded)."""
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value) if isinstance(value, dict) else {}


def _held_back(channel: Channel, row: DueRow, available: int) -> int:
    """While orders are not imported, a raise is capped at what the channel was last told."""
    if channel.has_orders_pending and row.last_pushed_qty is not None and available > row.last_pushed_qty:
        return row.last_pushed_qty
    return available


@dataclass(frozen=True)
class PlannedQuantity:
    """What the pusher sends for one listing now (``listings_push_plan``)."""

    listing_id: int
    sku: str
    available: int  # the quantity it is told (0 while an incident's cause holds)
    zeroed: bool  # 0 because of an open incident, whatever the stock
    held: bool  # a raise over what the channel was last told while its orders are not imported: not sent yet


def listings_push_plan(channel: Channel, last_pushed: dict[int, int | None]) -> dict[int, PlannedQuantity]:
    """The quantities the pusher would send now for these listings ({listing id: what the channel was last
    told}), by the same rules it pushes with: the listing formula, 0 while an incident holds, raises held
    while orders are not imported. Listings that no longer exist are left out. Two queries whatever the
    number; the go-live preview (``services.golive``) is this same computation."""
    ids = list(last_pushed)
    availability, zeroed = listings_availability(ids), listings_zeroed_by_incident(ids)
    pending_orders = channel.has_orders_pending
    planned = {}
    for listing_id, told in last_pushed.items():
        current = availability.get(listing_id)
        if current is None:
            continue
        is_zeroed = listing_id in zeroed
        available = 0 if is_zeroed else current.available
        held = pending_orders and available > 0 and (told is None or available > told)
        planned[listing_id] = PlannedQuantity(listing_id, current.channel_sku, available, is_zeroed, held)
    return planned


def _places_fill(channel: Channel, updates: list[Update]) -> set[int]:
    """Each update's quantity at each platform location of the channel's ``location_map`` (0 everywhere while an
    incident holds it), raises held at what a location was last told while orders are not imported; the
    update's ``available`` becomes their sum."""
    places = location_map(channel.settings or {})
    shown = listings_availability_by_place([u.row.listing_id for u in updates], places)
    pending_orders = channel.has_orders_pending
    capped: set[int] = set()
    for update in updates:
        now = shown.get(update.row.listing_id, {})
        told = update.row.pushed_places or {}
        update.places = {}
        for place in places:
            quantity = 0 if update.zeroed else now.get(place, 0)
            before = told.get(place)
            if pending_orders and before is not None and quantity > before:
                quantity = int(before)
                capped.add(update.row.listing_id)
            update.places[place] = quantity
        update.available = sum(update.places.values())
    return capped


def _places_sent(update: Update) -> tuple[PlaceQuantity, ...]:
    """The platform locations whose quantity changes (all of them when none does: a push asked for again)."""
    told = update.row.pushed_places or {}
    every = tuple(PlaceQuantity(place, quantity, told.get(place)) for place, quantity in update.places.items())
    changed = tuple(p for p in every if p.last_pushed != p.available)
    return changed or every


def _places_unchanged(update: Update) -> bool:
    told = update.row.pushed_places or {}
    return all(told.get(place) == quantity for place, quantity in update.places.items())


def _plan(channel: Channel, rows: list[DueRow], report: PushReport, connector: Connector | None = None) -> list[Update]:
    """Quantities for the batch; settles rows that need no push now (already shown, or held back).

    A listing shows 0 while an open incident's cause holds for one of its items (decided now,
    not when the work was queued, so a cancel that removed the cause is never pushed as 0).
    """
    planned = listings_push_plan(channel, {row.listing_id: row.last_pushed_qty for row in rows})
    skip_unchanged = bool(int(sync_setting("SYNC_SKIP_UNCHANGED")))
    by_place = connector is not None and connector.sets_places
    updates, done, held = [], [], []
    for row in rows:
        plan = planned.get(row.listing_id)
        if plan is None:
            done.append(row)
        elif plan.held and not by_place:  # per platform location, raises are held place by place below
            held.append(row)
        elif skip_unchanged and plan.available == row.last_pushed_qty and not row.repush and not by_place:
            done.append(row)
        else:
            updates.append(Update(row, plan.sku, plan.available, plan.zeroed))
    if by_place and updates:
        # Per platform location: a listing whose sum is unchanged may still move stock between locations.
        capped = _places_fill(channel, updates)
        # A raise held back to what a location was last told leaves nothing to send: the row waits (held).
        waiting = [u for u in updates if u.row.listing_id in capped and _places_unchanged(u)]
        held += [u.row for u in waiting]
        same = [u for u in updates if _places_unchanged(u) and not u.row.repush and u not in waiting]
        if skip_unchanged:
            done += [u.row for u in same]
        updates = [u for u in updates if u not in waiting and (u not in same or not skip_unchanged)]
    zeroed = {listing for listing, plan in planned.items() if plan.zeroed}
    if done:
        with transaction.atomic(), connection.cursor() as cursor:
            sync_work_for_update(r.listing_id for r in done)
            cursor.execute(
                """
                DELETE FROM channels_syncwork w
                 USING unnest(%s::bigint[], %s::bigint[]) AS p(listing_id, version)
                 WHERE w.listing_id = p.listing_id AND w.version = p.version
                """,
                [[r.listing_id for r in done], [r.version for r in done]],
            )
            # The channel shows the right number already; only why it shows it may have changed.
            cursor.execute(
                """
                UPDATE channels_listing AS l SET zeroed_by_incident = p.zeroed
                  FROM unnest(%s::bigint[], %s::bool[]) AS p(listing_id, zeroed)
                 WHERE l.id = p.listing_id AND l.zeroed_by_incident <> p.zeroed
                """,
                [[r.listing_id for r in done], [r.listing_id in zeroed for r in done]],
            )
        report.skipped += len(done)
    if held:
        recheck = timezone.now() + timedelta(seconds=float(sync_setting("SYNC_HOLD_RECHECK_S")))
        with transaction.atomic():
            sync_work_for_update(r.listing_id for r in held)
            SyncWork.objects.filter(listing_id__in=[r.listing_id for r in held]).update(
                next_attempt_at=recheck, last_error="held: channel has orders not imported yet"
            )
        report.held += len(held)
    return updates


def _send(
    channel: Channel, connector: Connector, ref: ChannelRef, updates: list[Update], as_of: datetime, report: PushReport
) -> None:
    """Hand the batch to the connector and settle every row by what became of it."""
    by_id = {u.row.listing_id: u for u in updates}
    batch = [
        QuantityUpdate(
            listing_id=u.row.listing_id,
            sku=u.sku,
            external_id=u.row.external_id,
            available=u.available,
            last_pushed=u.row.last_pushed_qty,
            places=_places_sent(u),
        )
        for u in updates
    ]
    try:
        result = connector.push(ref, batch)
    except ConnectorError as err:
        result = PushResult(failed=dict.fromkeys(by_id, str(err) or type(err).__name__), retry_after=err.retry_after)
    except Exception as err:  # a connector's bug fails the batch (counted, dead-lettered in time), never the worker
        log.exception("channel_connector_failed", channel=channel.code, connector=connector.name)
        result = PushResult(failed=dict.fromkeys(by_id, f"{type(err).__name__}: {err}"))
    # Every reason becomes a row's last_error (shown in the admin) and a log line: no credential in it.
    result.failed = {i: ref.redact(reason) for i, reason in result.failed.items()}
    requests = max(1, result.requests)
    report.requests += requests
    bucket = limits.channel_bucket(channel)
    if result.throttled_for is not None:
        # Nothing was applied: the rows stay as they are and go out once the pause is over.
        bucket.pause(result.throttled_for)
        report.throttled += 1
        metrics.push_record(channel_code=channel.code, requests=requests, throttled=1)
        log.warning("channel_throttled", channel=channel.code, retry_after=result.throttled_for)
        return
    seen_places = {i: dict(seen) for i, seen in result.mismatched_places.items()}
    for i, seen in list(result.mismatched_places.items()):
        if i in by_id:  # the locations not sent show what they were last told (unchanged)
            every = {**by_id[i].places, **seen}
            result.mismatched_places[i] = every
            values = list(every.values())
            result.mismatched[i] = None if any(v is None for v in values) else sum(v or 0 for v in values)
    # Each update lands in one outcome: accepted before mismatched before failed.
    accepted_ids = [i for i in dict.fromkeys(result.accepted) if i in by_id]
    accepted = [by_id[i] for i in accepted_ids]
    settled = set(accepted_ids)
    mismatched: dict[int, int] = {}
    failed: dict[int, str] = {}
    for i, shown in result.mismatched.items():
        if i in by_id and i not in settled:
            if shown is None:
                failed[i] = "mismatch: the platform's quantity could not be read"
            else:
                mismatched[i] = shown
    settled |= set(mismatched) | set(failed)
    failed.update({i: error for i, error in result.failed.items() if i in by_id and i not in settled})
    # An update the connector says nothing about is not known to be applied: it is tried again.
    failed.update(dict.fromkeys([i for i in by_id if i not in settled and i not in failed], "no answer for it"))
    accepted_at = _accepted(channel, accepted, as_of, report) if accepted else None
    if mismatched:
        _mismatched(
            channel,
            connector,
            [by_id[i] for i in mismatched],
            mismatched,
            report,
            places=result.mismatched_places,
            places_seen=seen_places,
        )
    dead = 0
    if failed:
        whole_batch = not accepted and not mismatched
        dead = _failed(channel, [by_id[i] for i in failed], failed, result.retry_after, report, pause=whole_batch)
    if result.pause_for:
        bucket.pause(result.pause_for)  # the platform's budget asks for a rest before the next request
    metrics.push_record(
        channel_code=channel.code,
        requests=requests,
        updates=len(accepted),
        failures=1 if failed else 0,
        dead=dead,
        latencies=[(u.row.priority, (accepted_at - u.row.enqueued_at).total_seconds()) for u in accepted]
        if accepted_at
        else [],
    )


def _accepted(channel: Channel, updates: list[Update], as_of: datetime, report: PushReport) -> datetime:
    """The platform shows these quantities now: remember them and delete exactly the work that was pushed."""
    accepted_at = timezone.now()
    ids = [u.row.listing_id for u in updates]
    with transaction.atomic(), connection.cursor() as cursor:
        sync_work_for_update(ids)
        cursor.execute(
            """
            UPDATE channels_listing AS l
               SET last_pushed_qty = p.qty, last_pushed_at = %s, zeroed_by_incident = p.zeroed,
                   platform_sold_units = LEAST(l.platform_sold_units, 0),
                   pushed_places = COALESCE(p.places, l.pushed_places)
              FROM unnest(%s::bigint[], %s::int[], %s::bool[], %s::jsonb[]) AS p(listing_id, qty, zeroed, places)
             WHERE l.id = p.listing_id
            """,
            [
                accepted_at,
                ids,
                [u.available for u in updates],
                [u.zeroed for u in updates],
                [json.dumps(u.places) if u.places else None for u in updates],
            ],
        )
        cursor.execute(
            """
            DELETE FROM channels_syncwork w
             USING unnest(%s::bigint[], %s::bigint[]) AS p(listing_id, version)
             WHERE w.listing_id = p.listing_id AND w.version = p.version
            """,
            [ids, [u.row.version for u in updates]],
        )
        # Changes that landed during the push stay; their earliest unpushed change is after our read.
        cursor.execute(
            """
            UPDATE channels_syncwork SET enqueued_at = GREATEST(enqueued_at, %s), attempts = 0, repush = false
             WHERE listing_id = ANY(%s::bigint[])
            """,
            [as_of, ids],
        )
        Channel.objects.filter(pk=channel.pk).update(last_push_at=accepted_at)
    channel_recovered(channel_id=channel.pk, pushed_listing_ids=ids)
    report.updates += len(updates)
    return accepted_at


def _mismatched(
    channel: Channel,
    connector: Connector,
    updates: list[Update],
    shown: dict[int, int],
    report: PushReport,
    *,
    places: dict[int, dict[str, int | None]] | None = None,
    places_seen: dict[int, dict[str, int | None]] | None = None,
) -> None:
    """The platform's quantity was not what we last told it: a sale there, or a hand edit.

    Never overwritten blindly: the listing takes what the platform shows as its last pushed
    quantity (the next compare value), and the row stays pending with ``repush``. A drop that
    platform orders already imported account for (``Listing.platform_sold_units``: the platform
    lowers its own stock when it sells) is in our books: the push goes again at once. Any other
    difference may be a sale not imported yet: where the connector brings orders in by polling,
    the channel's orders count as pending from now, so the watermark rule holds any raise until
    the poll has imported past this instant (lowers still go out); otherwise the row waits one
    hold period for the order's webhook.
    """
    ids = [u.row.listing_id for u in updates]
    told = {u.row.listing_id: u.row.last_pushed_qty for u in updates}
    recheck = float(sync_setting("SYNC_HOLD_RECHECK_S"))
    # Only this channel's one pusher lowers the counters; an import raising one meanwhile only makes
    # this reading cautious.
    sold = dict(Listing.objects.filter(pk__in=ids).values_list("pk", "platform_sold_units"))
    drops = {i: before - shown[i] for i in ids if (before := told[i]) is not None and shown[i] < before}
    for u in updates:  # per platform location: only the locations that showed another quantity dropped
        seen = (places_seen or {}).get(u.row.listing_id)
        if seen is not None:
            before_at = u.row.pushed_places or {}
            drop = sum(
                before_at[p] - q
                for p, q in seen.items()
                if q is not None and before_at.get(p) is not None and q < before_at[p]
            )
            drops.pop(u.row.listing_id, None)
            if drop > 0:
                drops[u.row.listing_id] = drop
    explained = {i for i, drop in drops.items() if drop <= sold.get(i, 0)}
    if connector.polls_orders and len(explained) < len(ids):
        # First, in its own transaction (the channel row before sync work, never the other way round):
        # a pusher that dies right after leaves the row as it was, and the next push meets the mismatch again.
        channel_watermark_set(channel=channel, orders_pending_until=timezone.now())
    with transaction.atomic(), connection.cursor() as cursor:
        sync_work_for_update(ids)
        cursor.execute(
            """
            UPDATE channels_listing AS l
               SET last_pushed_qty = p.qty, platform_sold_units = l.platform_sold_units - p.drop,
                   pushed_places = l.pushed_places || COALESCE(p.places, '{}'::jsonb)
              FROM unnest(%s::bigint[], %s::int[], %s::int[], %s::jsonb[]) AS p(listing_id, qty, drop, places)
             WHERE l.id = p.listing_id
            """,
            [ids, [shown[i] for i in ids], [drops.get(i, 0) for i in ids], [_places_json(places, i) for i in ids]],
        )
        waits = {i: 0.0 if i in explained or connector.polls_orders else recheck for i in ids}
        cursor.execute(
            """
            UPDATE channels_syncwork AS w
               SET repush = true, last_error = %s,
                   next_attempt_at = clock_timestamp() + make_interval(secs => p.wait)
              FROM unnest(%s::bigint[], %s::float8[]) AS p(listing_id, wait)
             WHERE w.listing_id = p.listing_id AND w.state = 'pending'
            """,
            [
                "mismatch: the platform showed another quantity; pushed again with it as the compare value",
                ids,
                [waits[i] for i in ids],
            ],
        )
    report.mismatched += len(updates)
    log.warning(
        "channel_push_mismatch",
        channel=channel.code,
        listings=ids[:20],
        shown=[shown[i] for i in ids[:20]],
        told=[told[i] for i in ids[:20]],
        explained_by_imported_orders=len(explained),
    )


def _places_json(places: dict[int, dict[str, int | None]] | None, listing_id: int) -> str | None:
    """What each platform location showed, as the listing's next compare values (unread ones left out)."""
    shown = (places or {}).get(listing_id)
    if not shown:
        return None
    return json.dumps({place: quantity for place, quantity in shown.items() if quantity is not None})


def _failed(
    channel: Channel,
    updates: Sequence[Update],
    errors: dict[int, str],
    retry_after: str | None,
    report: PushReport,
    *,
    pause: bool = True,
) -> int:
    """Count an attempt on each row; back off; dead-letter those out of attempts. Returns how many died.

    When the whole batch failed (the platform is down or refuses us), the channel's bucket pauses for
    the backoff: a failing channel gets one request per backoff period, not one per batch. Rows the
    platform refused one by one (a bad SKU among good ones) back off alone.
    """
    max_attempts = int(sync_setting("SYNC_MAX_ATTEMPTS"))
    attempts = max(u.row.attempts for u in updates) + 1
    delay = backoff_seconds(attempts)
    if pause:  # the platform as a whole: try again often enough to notice it is back (``SYNC_PROBE_S``)
        delay = min(delay, float(sync_setting("SYNC_PROBE_S")))
    delay = max(delay, retry_after_seconds(retry_after, default=0.0))
    ids = [u.row.listing_id for u in updates]
    with transaction.atomic(), connection.cursor() as cursor:
        sync_work_for_update(ids)
        cursor.execute(
            """
            WITH failed AS (
                UPDATE channels_syncwork AS w
                   SET attempts = w.attempts + 1, last_error = p.error, channel_failure = %s,
                       next_attempt_at = clock_timestamp() + make_interval(secs => %s),
                       state = CASE WHEN w.attempts + 1 >= %s THEN 'dead' ELSE w.state END
                  FROM unnest(%s::bigint[], %s::text[]) AS p(listing_id, error)
                 WHERE w.listing_id = p.listing_id AND w.state = 'pending'
                RETURNING w.listing_id, w.channel_id, w.state, w.attempts, w.last_error, w.channel_failure
            ), recorded AS (
                INSERT INTO channels_deadletterrecord
                       (listing_id, channel_id, died_at, attempts, error, channel_failure)
                SELECT listing_id, channel_id, now(), attempts, last_error, channel_failure
                  FROM failed WHERE state = 'dead'
                    ON CONFLICT (listing_id) WHERE healed_at IS NULL DO NOTHING
            )
            SELECT count(*) FILTER (WHERE state = 'dead') FROM failed
            """,
            [pause, delay, max_attempts, ids, [errors[i][:500] for i in ids]],
        )
        dead = int(cursor.fetchone()[0])
    if pause:
        limits.channel_bucket(channel).pause(delay)
    error = errors[ids[0]]
    report.failures += 1
    report.dead += dead
    report.errors.append(error if len(ids) == 1 else f"{error} (and {len(ids) - 1} more)")
    log.warning(
        "channel_push_failed",
        channel=channel.code,
        error=error,
        failed=len(ids),
        attempts=attempts,
        retry_in=delay,
        dead=dead,
    )
    return dead
