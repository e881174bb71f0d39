"""Reads for the staff pages: the safety-stock table, stock over time from the ledger, incidents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from django.db import connection
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum

from apps.catalog.models import Incident, Item, Location, Movement, StockLevel
from apps.catalog.stock.atp import atp_vectorised, location_sells
from apps.channels.models import DeadLetterRecord, Listing, SyncWork
from apps.forecasting.models import SafetyAudit, SafetyForecast, SafetyOverride
from apps.forecasting.services.demand import slot_of
from apps.orders.models import Order
from apps.suppliers.models import FeedRun


def safety_levels_list(
    *, at: datetime, location: Location | None = None, query: str = "", location_ids: list[int] | None = None
) -> QuerySet[StockLevel]:
    """Stock levels with the current slot's forecast and any override, in one query (the page adds a count).

    Only levels at ``location_ids`` when given (the locations a store's staff see).
    """
    overrides = SafetyOverride.objects.filter(item_id=OuterRef("item_id"), location_id=OuterRef("location_id"))
    forecast = SafetyForecast.objects.filter(
        item_id=OuterRef("item_id"), location_id=OuterRef("location_id"), slot=slot_of(at)
    )
    levels = (
        StockLevel.objects.select_related("item", "location")
        .filter(item__is_active=True)
        .annotate(
            forecast_value=Subquery(forecast.values("value")[:1]),
            override_value=Subquery(overrides.values("value")[:1]),
            override_reason=Subquery(overrides.values("reason")[:1]),
            override_valid_until=Subquery(overrides.values("valid_until")[:1]),
        )
        .order_by("item__sku", "location__code")
    )
    if location is not None:
        levels = levels.filter(location=location)
    if location_ids is not None:
        levels = levels.filter(location_id__in=location_ids)
    query = query.strip()
    if query:
        levels = levels.filter(Q(item__sku__icontains=query) | Q(item__name__icontains=query))
    return levels


def safety_history(*, item: Item, location: Location) -> QuerySet[SafetyAudit]:
    return SafetyAudit.objects.filter(item=item, location=location).select_related("user").order_by("-at", "-id")


STOCK_OVER_TIME_SQL = """
WITH running AS (
    SELECT m.location_id, m.created_at, m.id,
           SUM(m.on_hand_delta) OVER w AS on_hand,
           SUM(m.reserved_delta) OVER w AS reserved
      FROM catalog_movement m
     WHERE m.item_id = %(item)s AND (%(locations)s::bigint[] IS NULL OR m.location_id = ANY(%(locations)s))
    WINDOW w AS (PARTITION BY m.location_id ORDER BY m.created_at, m.id)
), bucketed AS (
    SELECT DISTINCT ON (location_id, bucket)
           location_id,
           GREATEST(%(since)s::timestamptz,
                    to_timestamp(floor(extract(epoch FROM created_at) / %(width)s) * %(width)s)) AS bucket,
           on_hand, reserved
      FROM running
     ORDER BY location_id, bucket, created_at DESC, id DESC
)
SELECT location_id, bucket, on_hand, reserved FROM bucketed ORDER BY bucket
"""


@dataclass(frozen=True)
class StockSeries:
    """Item stock at the end of each bucket, summed over the chosen locations."""

    frame: pd.DataFrame  # index: bucket start (aware); columns on_hand, reserved, atp
    locations: list[Location]


def stock_over_time(
    *,
    item: Item,
    since: datetime,
    until: datetime,
    location: Location | None = None,
    location_ids: list[int] | None = None,
) -> StockSeries:
    """On-hand, reserved and ATP from the ledger (running sums in SQL), per hour or day, summed per location.

    Over ``location``, else over ``location_ids`` (the locations a store's staff see), else everywhere.

    ATP (``stock.atp``) uses each location's current safety stock and whether it sells now: the
    ledger moves neither.
    """
    span_hours = max(1.0, (until - since).total_seconds() / 3600)
    width = 3600 if span_hours <= 24 * 14 else 86400
    if location is not None:
        location_ids = [location.pk]
    with connection.cursor() as cursor:
        cursor.execute(
            STOCK_OVER_TIME_SQL, {"item": item.pk, "locations": location_ids, "since": since, "width": width}
        )
        rows = cursor.fetchall()
    levels = StockLevel.objects.filter(item=item).select_related("location")
    if location_ids is not None:
        levels = levels.filter(location_id__in=location_ids)
    safety = {lv.location_id: lv.safety for lv in levels}
    locations = sorted({lv.location for lv in levels}, key=lambda loc: loc.code)
    selling = {
        loc.pk for loc in locations if location_sells(is_active=loc.is_active, stock_valid_until=loc.stock_valid_until)
    }
    index = pd.date_range(
        pd.Timestamp(int(since.timestamp()) // width * width, unit="s", tz="UTC"),
        pd.Timestamp(until).tz_convert("UTC"),
        freq=f"{width}s",
    )
    if not rows:
        return StockSeries(frame=pd.DataFrame(columns=["on_hand", "reserved", "atp"], index=index[:0]), locations=[])
    raw = pd.DataFrame(rows, columns=["location_id", "bucket", "on_hand", "reserved"])
    raw["bucket"] = pd.to_datetime(raw["bucket"], utc=True)
    # A bucket is labelled by its start; the clamp to `since` may leave it between two marks, so floor it.
    raw["bucket"] = raw["bucket"].dt.floor(f"{width}s")
    raw = raw.drop_duplicates(["location_id", "bucket"], keep="last")
    on_hand = raw.pivot(index="bucket", columns="location_id", values="on_hand")
    reserved = raw.pivot(index="bucket", columns="location_id", values="reserved")
    full = index.union(on_hand.index)
    on_hand = on_hand.reindex(full).ffill().fillna(0)
    reserved = reserved.reindex(full).ffill().fillna(0)
    full_index = full[full >= index[0]]
    on_hand, reserved = on_hand.loc[full_index], reserved.loc[full_index]
    safety_row = pd.Series({loc: safety.get(loc, 0) for loc in on_hand.columns})
    sells_row = pd.Series({loc: int(loc in selling) for loc in on_hand.columns})
    atp = atp_vectorised(on_hand=on_hand, reserved=reserved, safety=safety_row, location_sells=sells_row)
    frame = pd.DataFrame({"on_hand": on_hand.sum(axis=1), "reserved": reserved.sum(axis=1), "atp": atp.sum(axis=1)})
    return StockSeries(frame=frame.astype("int64"), locations=locations)


def open_incidents(*, limit: int = 20, location_ids: list[int] | None = None) -> tuple[int, list[Incident]]:
    """Open incidents, newest first (only those at ``location_ids`` when given)."""
    qs = Incident.objects.filter(status=Incident.Status.OPEN)
    if location_ids is not None:
        qs = qs.filter(location_id__in=location_ids)
    return qs.count(), list(qs.select_related("item", "location").order_by("-opened_at")[:limit])


def dashboard_item(sku: str | None, *, location_ids: list[int] | None = None) -> Item | None:
    """The item asked for, else the one that moved last (at ``location_ids`` when given), else the first."""
    if sku:
        return Item.objects.filter(sku=sku).first()
    moved = Movement.objects.all() if location_ids is None else Movement.objects.filter(location_id__in=location_ids)
    latest = moved.order_by("-created_at").values_list("item_id", flat=True).first()
    if latest is not None:
        return Item.objects.filter(pk=latest).first()
    return Item.objects.order_by("sku").first()


def item_channel_quantities(*, item: Item) -> list[dict[str, Any]]:
    """Each listing selling this item (alone or in a kit): what it shows now and what was pushed last."""
    from apps.channels.models import Listing
    from apps.channels.selectors import listings_availability

    listings = list(
        Listing.objects.filter(product__components__item=item)
        .select_related("channel", "product")
        .order_by("channel__code", "channel_sku")
        .distinct()
    )
    availability = listings_availability([lst.pk for lst in listings])
    return [
        {
            "channel": lst.channel.code,
            "channel_sku": lst.channel_sku,
            "product": lst.product.code,
            "available": availability[lst.pk].available if lst.pk in availability else 0,
            "last_pushed_qty": lst.last_pushed_qty,
            "last_pushed_at": lst.last_pushed_at,
            "active": lst.is_active and lst.channel.is_active,
        }
        for lst in listings
    ]


@dataclass(frozen=True)
class ActivitySummary:
    """What happened to the business in one window: the `summary` log line of every minute."""

    window_s: int
    orders_in: int
    listings_pushed: int
    pushes_retrying: int
    pushes_dead: int
    feed_runs: int
    feed_runs_failed: int
    feed_rows_quarantined: int
    incidents_opened: int
    incidents_open: int

    def as_log(self) -> dict[str, int]:
        return {
            "window_s": self.window_s,
            "orders_in": self.orders_in,
            "pushed": self.listings_pushed,
            "push_retrying": self.pushes_retrying,
            "push_dead": self.pushes_dead,
            "feeds": self.feed_runs,
            "feeds_failed": self.feed_runs_failed,
            "rows_quarantined": self.feed_rows_quarantined,
            "incidents_opened": self.incidents_opened,
            "incidents_open": self.incidents_open,
        }


def activity_summary(*, until: datetime, window_s: int) -> ActivitySummary:
    """Counts of the window ending at ``until``: five counting queries, nothing read row by row."""
    since = until - timedelta(seconds=window_s)
    runs = FeedRun.objects.filter(started_at__gte=since, started_at__lt=until).aggregate(
        runs=Count("id"),
        failed=Count("id", filter=~Q(status__in=[FeedRun.Status.SUCCEEDED, FeedRun.Status.RUNNING])),
        quarantined=Sum("rows_quarantined"),
    )
    incidents = Incident.objects.aggregate(
        open=Count("id", filter=Q(status=Incident.Status.OPEN)),
        opened=Count("id", filter=Q(opened_at__gte=since, opened_at__lt=until)),
    )
    return ActivitySummary(
        window_s=window_s,
        orders_in=Order.objects.filter(created_at__gte=since, created_at__lt=until).count(),
        listings_pushed=Listing.objects.filter(last_pushed_at__gte=since, last_pushed_at__lt=until).count(),
        pushes_retrying=SyncWork.objects.filter(state=SyncWork.State.PENDING, attempts__gt=0).count(),
        pushes_dead=DeadLetterRecord.objects.filter(died_at__gte=since, died_at__lt=until).count(),
        feed_runs=runs["runs"],
        feed_runs_failed=runs["failed"],
        feed_rows_quarantined=runs["quarantined"] or 0,
        incidents_opened=incidents["opened"],
        incidents_open=incidents["open"],
    )
