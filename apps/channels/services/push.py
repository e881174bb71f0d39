"""Pushing: the quantity read at push time, in batches, under the channel's rate limit, with retries.

One pusher per channel at a time (a Redis lock). It loops while work is due: reads a
batch of due rows, computes their quantities in one query, drops those the channel
already shows, holds back raises while the channel has orders not yet imported, takes a
token from the channel's bucket, and POSTs the batch. A 2xx deletes exactly the rows it
pushed (version check); 429 pauses the bucket for Retry-After; anything else counts an
attempt with exponential backoff and, after the last allowed one, moves the row to the
dead letter.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests
import structlog
from django.db import connection, transaction
from django.utils import timezone

from apps.channels import limits, metrics
from apps.channels.conf import sync_setting
from apps.channels.locks import sync_work_for_update
from apps.channels.models import Channel, SyncWork
from apps.channels.selectors import listings_availability, listings_zeroed_by_incident
from apps.channels.services.work import channel_kick

log = structlog.get_logger("stockroom.sync")

SIGNATURE_HEADER = "X-Stockroom-Signature"

# Due rows first (most urgent, oldest first); the rest of the batch is filled with pending
# rows that are not due yet: they ride along in a request that goes out anyway, for free.
_DUE_ROWS = """
SELECT w.listing_id, w.version, w.priority, w.enqueued_at, w.repush, w.attempts, l.last_pushed_qty,
       (w.priority = 1
        OR (w.priority = 2 AND w.enqueued_at <= clock_timestamp() - make_interval(secs => %(tier2)s))
        OR w.enqueued_at <= clock_timestamp() - make_interval(secs => %(tier3)s)) AS due
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
    due: bool


@dataclass
class Update:
    row: DueRow
    sku: str
    available: int
    zeroed: bool = False  # 0 because an incident's cause still holds, whatever the stock


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
    follow_up_in: float | None = None
    errors: list[str] = field(default_factory=list)


def sign(body: bytes, secret: str) -> str:
    """The push signature header value: ``sha256=<hex HMAC-SHA256 of the exact body bytes>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def push_body(*, channel_code: str, updates: list[tuple[str, int]], as_of: datetime) -> bytes:
    stamp = as_of.isoformat()
    payload = {
        "channel": channel_code,
        "updates": [{"sku": sku, "available": available, "as_of": stamp} for sku, available in updates],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def retry_after_seconds(value: str | None, default: float) -> float:
    """Retry-After as seconds or an HTTP date; ``default`` when absent or unreadable."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, (when - timezone.now()).total_seconds())


def backoff_seconds(attempts: int) -> float:
    base, cap = float(sync_setting("SYNC_BACKOFF_BASE_S")), float(sync_setting("SYNC_BACKOFF_MAX_S"))
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.8, 1.2)


_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def channel_push(*, channel_id: int, kicked: str | None = None) -> PushReport:
    """Push every due listing of the channel, as the one pusher of that channel."""
    if kicked:
        limits.kick_clear(channel_id, delayed=kicked == "delayed")
    lock = limits.PusherLock(channel_id)
    if not lock.acquire():
        # The holder looks at this flag after it lets go, so this work is never stranded.
        limits.again_mark(channel_id)
        if not lock.acquire():
            return PushReport(channel_id, busy=True)
    report = PushReport(channel_id)
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
            channel=channel_id,
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
        channel = Channel.objects.filter(pk=channel_id).first()
        if channel is None or not channel.is_active or not channel.push_url:
            return
        rows = _due_rows(channel)
        if not rows:
            return
        if len(rows) < channel.batch_size:
            age = (timezone.now() - min(row.enqueued_at for row in rows if row.due)).total_seconds()
            gather = float(sync_setting("SYNC_TIER1_GATHER_S"))
            if age < gather:
                time.sleep(gather - age)
                lock.renew()
                continue
        updates = _plan(channel, rows, report)
        if not updates:
            continue
        bucket = limits.TokenBucket(channel.pk, rate_per_s=channel.rate_per_s, burst=channel.burst)
        waited = False
        while (wait := bucket.take()) > 0:
            if wait > inline_wait:
                report.follow_up_in = wait
                return
            time.sleep(wait)
            waited = True
            lock.renew()
        lock.renew()
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
        _send(channel, updates, as_of, report)


def _due_rows(channel: Channel) -> list[DueRow]:
    with connection.cursor() as cursor:
        cursor.execute(
            _DUE_ROWS,
            {
                "channel": channel.pk,
                "tier2": float(sync_setting("SYNC_TIER2_DELAY_S")),
                "tier3": float(sync_setting("SYNC_TIER3_BATCH_S")),
                "limit": max(1, channel.batch_size),
            },
        )
        rows = [DueRow(*row) for row in cursor.fetchall()]
    return rows if rows and rows[0].due else []


def _held_back(channel: Channel, row: DueRow, available: int) -> int:
    """While orders are not imported, a raise is capped at what the channel was last told."""
    if channel.has_orders_pending and row.last_pushed_qty is not None and available > row.last_pushed_qty:
        return row.last_pushed_qty
    return available


def _plan(channel: Channel, rows: list[DueRow], report: PushReport) -> list[Update]:
    """Quantities for the batch; settles rows that need no push now (already shown, or held back).

    A listing shows 0 while an open incident's cause holds for one of its items (decided now,
    not when the work was queued, so a cancel that removed the cause is never pushed as 0).
    """
    ids = [row.listing_id for row in rows]
    availability, zeroed = listings_availability(ids), listings_zeroed_by_incident(ids)
    pending_orders = channel.has_orders_pending
    skip_unchanged = bool(int(sync_setting("SYNC_SKIP_UNCHANGED")))
    updates, done, held = [], [], []
    for row in rows:
        current = availability.get(row.listing_id)
        if current is None:
            done.append(row)
            continue
        is_zeroed = row.listing_id in zeroed
        available = 0 if is_zeroed else current.available
        if pending_orders and available > 0 and (row.last_pushed_qty is None or available > row.last_pushed_qty):
            held.append(row)
        elif skip_unchanged and available == row.last_pushed_qty and not row.repush:
            done.append(row)
        else:
            updates.append(Update(row, current.channel_sku, available, is_zeroed))
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


def _send(channel: Channel, updates: list[Update], as_of: datetime, report: PushReport) -> None:
    body = push_body(channel_code=channel.code, updates=[(u.sku, u.available) for u in updates], as_of=as_of)
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, channel.secret)}
    report.requests += 1
    try:
        response = _session().post(
            channel.push_url, data=body, headers=headers, timeout=float(sync_setting("SYNC_HTTP_TIMEOUT_S"))
        )
    except requests.RequestException as err:
        _failed(channel, updates, f"{type(err).__name__}: {err}", None, report)
        return
    if 200 <= response.status_code < 300:
        _accepted(channel, updates, as_of, report)
    elif response.status_code == 429:
        wait = retry_after_seconds(response.headers.get("Retry-After"), default=1.0)
        limits.TokenBucket(channel.pk, rate_per_s=channel.rate_per_s, burst=channel.burst).pause(wait)
        report.throttled += 1
        metrics.push_record(channel_code=channel.code, requests=1, throttled=1)
        log.warning("channel_throttled", channel=channel.code, retry_after=wait)
    else:
        retry_after = response.headers.get("Retry-After")
        _failed(channel, updates, f"HTTP {response.status_code}: {response.text[:200]}", retry_after, report)


def _accepted(channel: Channel, updates: list[Update], as_of: datetime, report: PushReport) -> None:
    accepted_at = timezone.now()
    ids = [u.row.listing_id for u in updates]
    with transaction.atomic(), connection.cursor() as cursor:
        sync_work_for_update(ids)
        cursor.execute(
            """
            UPDATE channels_listing AS l
               SET last_pushed_qty = p.qty, last_pushed_at = %s, zeroed_by_incident = p.zeroed
              FROM unnest(%s::bigint[], %s::int[], %s::bool[]) AS p(listing_id, qty, zeroed)
             WHERE l.id = p.listing_id
            """,
            [accepted_at, ids, [u.available for u in updates], [u.zeroed for u in updates]],
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
    report.updates += len(updates)
    metrics.push_record(
        channel_code=channel.code,
        requests=1,
        updates=len(updates),
        latencies=[(u.row.priority, (accepted_at - u.row.enqueued_at).total_seconds()) for u in updates],
    )


def _failed(channel: Channel, updates: list[Update], error: str, retry_after: str | None, report: PushReport) -> None:
    """Count an attempt on every row of the batch; back off; dead-letter those out of attempts."""
    max_attempts = int(sync_setting("SYNC_MAX_ATTEMPTS"))
    attempts = max(u.row.attempts for u in updates) + 1
    delay = max(backoff_seconds(attempts), retry_after_seconds(retry_after, default=0.0))
    with transaction.atomic(), connection.cursor() as cursor:
        sync_work_for_update(u.row.listing_id for u in updates)
        cursor.execute(
            """
            UPDATE channels_syncwork
               SET attempts = attempts + 1, last_error = %s,
                   next_attempt_at = clock_timestamp() + make_interval(secs => %s),
                   state = CASE WHEN attempts + 1 >= %s THEN 'dead' ELSE state END
             WHERE listing_id = ANY(%s::bigint[]) AND state = 'pending'
            RETURNING state
            """,
            [error[:500], delay, max_attempts, [u.row.listing_id for u in updates]],
        )
        dead = sum(1 for (state,) in cursor.fetchall() if state == SyncWork.State.DEAD)
    # A failing channel gets one request per backoff period, not one per batch.
    limits.TokenBucket(channel.pk, rate_per_s=channel.rate_per_s, burst=channel.burst).pause(delay)
    report.failures += 1
    report.dead += dead
    report.errors.append(error)
    metrics.push_record(channel_code=channel.code, requests=1, failures=1, dead=dead)
    log.warning("channel_push_failed", channel=channel.code, error=error, attempts=attempts, retry_in=delay, dead=dead)
