"""The only place that locks stock levels. Always in (item_id, location_id) order, so no deadlocks."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection, transaction
from django.db.models import Q

from apps.catalog.models import Location, Receipt, StockCount, StockLevel, Transfer
from apps.catalog.stock.atp import atp_sql


def ensure_levels(pairs: Iterable[tuple[int, int]]) -> None:
    """Create missing StockLevel rows (zero stock) so that they can be locked."""
    wanted = sorted(set(pairs))
    if not wanted:
        return
    location_ids = sorted({loc for _, loc in wanted})
    negative = dict(Location.objects.filter(id__in=location_ids).values_list("id", "allow_negative"))
    StockLevel.objects.bulk_create(
        [StockLevel(item_id=item, location_id=loc, allow_negative=negative.get(loc, False)) for item, loc in wanted],
        ignore_conflicts=True,
    )


def levels_for_update(pairs: Iterable[tuple[int, int]]) -> list[StockLevel]:
    """Lock the levels of these (item_id, location_id) pairs, creating missing ones, in the fixed order."""
    wanted = sorted(set(pairs))
    if not wanted:
        return []
    ensure_levels(wanted)
    match = Q()
    for item, loc in wanted:
        match |= Q(item_id=item, location_id=loc)
    return list(StockLevel.objects.select_for_update(of=("self",)).filter(match).order_by("item_id", "location_id"))


# The same lock inside a single-statement writer: a CTE over a relation ``{wanted}`` with
# item_id, location_id and q (quantity the writer wants). It locks the levels in the fixed
# order and gives each one's ATP (``stock.atp``), read from the locked, latest row version.
LEVELS_FOR_UPDATE_CTE = f"""
    SELECT s.id, s.item_id, s.location_id, w.q, {atp_sql("s", "loc")} AS atp
      FROM catalog_stocklevel s
      JOIN {{wanted}} w ON s.item_id = w.item_id AND s.location_id = w.location_id
      JOIN catalog_location loc ON loc.id = s.location_id
     ORDER BY s.item_id, s.location_id
       FOR UPDATE OF s
"""


# A supplier feed's lock on its location's levels, as a CTE over a relation ``feed_targets``
# (item_id, target) and the parameter ``location``: the levels in item order (one location),
# with their on_hand before the feed.
SUPPLIER_LEVELS_FOR_UPDATE_CTE = """
    SELECT s.id, s.item_id, s.on_hand AS old_on_hand, t.target
      FROM catalog_stocklevel s
      JOIN feed_targets t ON t.item_id = s.item_id
     WHERE s.location_id = %(location)s
     ORDER BY s.item_id
       FOR UPDATE OF s
"""


def reconcile_lock() -> None:
    """One ledger reconciliation at a time, for the rest of the transaction: two at once would
    open the same incidents twice."""
    assert transaction.get_connection().in_atomic_block, "reconcile_lock needs a transaction"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended('stockroom.ledger_reconcile', 0))")


def receipt_for_update(receipt_id: int) -> Receipt:
    """Lock one receipt for a receiving (two clerks booking the same delivery note wait for each other)."""
    return Receipt.objects.select_for_update(of=("self",)).get(pk=receipt_id)


def transfer_for_update(transfer_id: int) -> Transfer:
    """Lock one transfer for shipping or receiving, so that it moves stock once."""
    return Transfer.objects.select_for_update(of=("self",)).get(pk=transfer_id)


def stock_count_for_update(count_id: int) -> StockCount:
    """Lock one count sheet while its quantities change or it is applied, so that it books once.

    Taken before the level locks (``levels_for_update``): order writers never lock a count sheet,
    so sheet, then levels in (item, location) order, cannot deadlock with them.
    """
    return StockCount.objects.select_for_update(of=("self",)).select_related("location").get(pk=count_id)


def user_for_update(user_id: int) -> None:
    """Lock a user's row: two merchants setting one user's locations at once take turns."""
    from django.contrib.auth import get_user_model

    list(get_user_model().objects.select_for_update().filter(pk=user_id).values_list("pk", flat=True))
