"""Demand history from the ledger, per item, location and hour-of-week slot.

The database does the heavy lifting (one GROUP BY over the movements in the window), pandas
shapes the result into weeks x slots matrices; there is no Python loop over ledger rows.
Demand is the on_hand taken by point-of-sale sales (offline) and by fulfilments (online). At a
drop-ship supplier's location the offline demand is the supplier's stock falling from one feed
to the next: its sales elsewhere, which Stockroom cannot refuse any more than a till. Only the
supplier's own feed runs count; staff changing a mapping or a trust factor is not a sale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.db import connection
from django.utils import timezone

from apps.catalog.models import FEED_RUN_REFERENCE, Movement
from apps.forecasting.models import SLOTS_PER_WEEK

OFFLINE_KINDS = (Movement.Kind.POS_SALE, Movement.Kind.SUPPLIER_FEED)
ONLINE_KINDS = (Movement.Kind.FULFIL,)

# Which supplier_feed movements are demand (see the module docstring).
_FEED_DEMAND = "(m.kind <> %(feed)s OR starts_with(m.reference, %(feed_run)s))"
_FEED_PARAMS = {"feed": Movement.Kind.SUPPLIER_FEED.value, "feed_run": FEED_RUN_REFERENCE}

HISTORY_SQL = """
WITH moves AS (
    SELECT m.item_id, m.location_id, m.kind, -m.on_hand_delta AS units,
           m.created_at AT TIME ZONE %(tz)s AS local_at
      FROM catalog_movement m
     WHERE m.created_at >= %(since)s AND m.created_at < %(until)s
       AND m.kind = ANY(%(kinds)s) AND m.on_hand_delta < 0
       AND {feed_demand}
       AND (%(items)s::bigint[] IS NULL OR m.item_id = ANY(%(items)s::bigint[]))
       AND (%(locations)s::bigint[] IS NULL OR m.location_id = ANY(%(locations)s::bigint[]))
)
SELECT item_id, location_id,
       date_trunc('week', local_at) AS week,
       ((EXTRACT(ISODOW FROM local_at)::int - 1) * 24 + EXTRACT(HOUR FROM local_at)::int) AS slot,
       COALESCE(SUM(units) FILTER (WHERE kind = ANY(%(offline)s)), 0)::bigint AS offline,
       COALESCE(SUM(units) FILTER (WHERE kind = ANY(%(online)s)), 0)::bigint AS online
  FROM moves
 GROUP BY 1, 2, 3, 4
""".replace("{feed_demand}", _FEED_DEMAND)

FIRST_SEEN_SQL = """
SELECT m.item_id, m.location_id, MIN(m.created_at)
  FROM catalog_movement m
 WHERE (%(items)s::bigint[] IS NULL OR m.item_id = ANY(%(items)s::bigint[]))
   AND (%(locations)s::bigint[] IS NULL OR m.location_id = ANY(%(locations)s::bigint[]))
 GROUP BY 1, 2
"""

BUCKET_SQL = """
SELECT to_timestamp(floor(extract(epoch FROM m.created_at) / %(width)s) * %(width)s) AS bucket,
       SUM(-m.on_hand_delta)::bigint AS units
  FROM catalog_movement m
 WHERE m.item_id = %(item)s AND m.location_id = %(location)s AND m.kind = ANY(%(kinds)s)
   AND m.on_hand_delta < 0 AND m.created_at >= %(since)s AND m.created_at < %(until)s
   AND {feed_demand}
 GROUP BY 1
""".replace("{feed_demand}", _FEED_DEMAND)


def week_start(at: datetime) -> datetime:
    """Monday 00:00 of the week holding ``at``, in the project's time zone."""
    local = timezone.localtime(at)
    monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    return timezone.make_aware(monday.replace(tzinfo=None), timezone.get_current_timezone())


def slot_of(at: datetime) -> int:
    """Hour of week in the project's time zone: Monday 00:00 is 0, Sunday 23:00 is 167."""
    local = timezone.localtime(at)
    return local.weekday() * 24 + local.hour


def demand_history(
    *,
    since: datetime,
    until: datetime,
    item_ids: Sequence[int] | None = None,
    location_ids: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Units sold per item, location, week and slot: columns item_id, location_id, week, slot, offline, online."""
    params: dict[str, Any] = {
        "tz": timezone.get_current_timezone_name(),
        "since": since,
        "until": until,
        "kinds": [*OFFLINE_KINDS, *ONLINE_KINDS],
        "offline": list(OFFLINE_KINDS),
        "online": list(ONLINE_KINDS),
        "items": list(item_ids) if item_ids is not None else None,
        "locations": list(location_ids) if location_ids is not None else None,
        **_FEED_PARAMS,
    }
    with connection.cursor() as cursor:
        cursor.execute(HISTORY_SQL, params)
        rows = cursor.fetchall()
    frame = pd.DataFrame(rows, columns=["item_id", "location_id", "week", "slot", "offline", "online"])
    if frame.empty:
        return frame.astype({"item_id": "int64", "location_id": "int64", "slot": "int64"})
    # The local, naive week start from PostgreSQL becomes an aware timestamp again.
    frame["week"] = pd.to_datetime(frame["week"]).dt.tz_localize(timezone.get_current_timezone_name())
    return frame.astype({"item_id": "int64", "location_id": "int64", "slot": "int64", "offline": "int64"})


def first_seen(
    *, item_ids: Sequence[int] | None = None, location_ids: Sequence[int] | None = None
) -> dict[tuple[int, int], datetime]:
    """When each (item, location) pair first moved at all: weeks before that are not zero demand."""
    params: dict[str, Any] = {
        "items": list(item_ids) if item_ids is not None else None,
        "locations": list(location_ids) if location_ids is not None else None,
    }
    with connection.cursor() as cursor:
        cursor.execute(FIRST_SEEN_SQL, params)
        return {(item, loc): at for item, loc, at in cursor.fetchall()}


@dataclass(frozen=True)
class SlotMatrix:
    """Offline demand per (item, location, slot) row and week column (oldest first)."""

    index: pd.MultiIndex  # (item_id, location_id, slot)
    weeks: list[datetime]
    demand: np.ndarray  # rows x weeks
    observed: np.ndarray  # rows x weeks, False where the pair did not exist yet


def slot_matrix(
    history: pd.DataFrame,
    *,
    pairs: Sequence[tuple[int, int]],
    weeks: Sequence[datetime],
    seen: dict[tuple[int, int], datetime],
    column: str = "offline",
) -> SlotMatrix:
    """Every pair x every slot x every week, zero where nothing sold, masked before the pair existed."""
    index = pd.MultiIndex.from_tuples(
        [(item, loc, slot) for item, loc in pairs for slot in range(SLOTS_PER_WEEK)],
        names=["item_id", "location_id", "slot"],
    )
    week_index = pd.DatetimeIndex([pd.Timestamp(w) for w in weeks])
    if history.empty:
        demand = np.zeros((len(index), len(weeks)))
    else:
        in_window = history[history["week"].isin(week_index)]
        table = in_window.pivot_table(
            index=["item_id", "location_id", "slot"], columns="week", values=column, aggfunc="sum", fill_value=0
        )
        demand = table.reindex(index=index, columns=week_index, fill_value=0).to_numpy(dtype=np.float64)
    # A week counts once the pair existed for all of it.
    starts = np.array([pd.Timestamp(w).value for w in weeks], dtype=np.int64)
    never = np.iinfo(np.int64).max
    pair_seen = np.array([pd.Timestamp(seen[p]).value if p in seen else never for p in pairs], dtype=np.int64)
    observed_pairs = starts[None, :] >= pair_seen[:, None]
    observed = np.repeat(observed_pairs, SLOTS_PER_WEEK, axis=0)
    return SlotMatrix(index=index, weeks=list(weeks), demand=demand, observed=observed)


def demand_buckets(
    *, item_id: int, location_id: int, since: datetime, until: datetime, width_seconds: int, kinds: Sequence[str]
) -> pd.Series:
    """Units sold per fixed-width time bucket (epoch aligned), zero-filled, indexed by bucket start."""
    width = max(60, int(width_seconds))
    with connection.cursor() as cursor:
        cursor.execute(
            BUCKET_SQL,
            {
                "width": width,
                "item": item_id,
                "location": location_id,
                "kinds": list(kinds),
                "since": since,
                "until": until,
                **_FEED_PARAMS,
            },
        )
        rows = cursor.fetchall()
    first = int(since.timestamp()) // width * width
    last = int(until.timestamp()) // width * width
    full = pd.date_range(
        pd.Timestamp(first, unit="s", tz="UTC"), pd.Timestamp(last, unit="s", tz="UTC"), freq=f"{width}s"
    )
    series = pd.Series(0, index=full, dtype="int64")
    if rows:
        got = pd.DataFrame(rows, columns=["bucket", "units"])
        got = got.set_index(pd.to_datetime(got["bucket"], utc=True))["units"].astype("int64")
        series = series.add(got, fill_value=0).astype("int64")
    return series
