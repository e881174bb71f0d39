"""Stock reads that span models: ATP per product and location, levels with their ATP, units on order.

ATP(item, location) and ATP(product, location) are defined in ``apps.catalog.stock.atp``; what a
channel shows for a listing is the channels app's (``apps.channels.selectors``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import BigIntegerField, F, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Cast, Coalesce, Greatest

from apps.catalog.stock.atp import atp_expression, product_atp_sql

if TYPE_CHECKING:
    from apps.catalog.models import StockLevel

PRODUCT_ATP_BY_LOCATION_SQL = f"""
WITH wanted AS (
    SELECT unnest(%(products)s::bigint[]) AS product_id
), per_location AS (
    SELECT pc.product_id, loc.id AS location_id,
           {product_atp_sql("s", "loc", "pc")} AS atp
      FROM wanted w
      JOIN catalog_productcomponent pc ON pc.product_id = w.product_id
      CROSS JOIN catalog_location loc
      LEFT JOIN catalog_stocklevel s ON s.item_id = pc.item_id AND s.location_id = loc.id
     WHERE loc.id = ANY(%(locations)s::bigint[]) AND loc.is_active
     GROUP BY pc.product_id, loc.id
)
SELECT product_id, location_id, atp FROM per_location
"""


def products_atp_by_location(product_ids: Iterable[int], location_ids: Iterable[int]) -> dict[tuple[int, int], int]:
    """ATP of each product at each location: {(product_id, location_id): atp}, one query."""
    products, locations = sorted(set(product_ids)), sorted(set(location_ids))
    if not products or not locations:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(PRODUCT_ATP_BY_LOCATION_SQL, {"products": products, "locations": locations})
        return {(product, location): int(atp) for product, location, atp in cursor.fetchall()}


def levels_with_atp() -> QuerySet[StockLevel]:
    """Stock levels with ``atp_now``: ATP as the availability engine counts it (``stock.atp``)."""
    from apps.catalog.models import StockLevel

    return StockLevel.objects.select_related("item", "location").annotate(atp_now=atp_expression())


def units_on_order(item: str = "item", location: str = "location") -> Coalesce:
    """Units still due on open receipts (expected or partly received) of an item at a location, as a subquery.

    ``item`` and ``location`` name the outer query's fields that hold their ids.
    """
    from apps.catalog.models import Receipt, ReceiptLine

    due = Greatest(Value(0), F("expected") - F("received"))
    per_pair = (
        ReceiptLine.objects.filter(
            item_id=OuterRef(item),
            receipt__location_id=OuterRef(location),
            receipt__status__in=[Receipt.Status.EXPECTED, Receipt.Status.PARTIAL],
        )
        .order_by()
        .values("item_id")
        .annotate(units=Cast(Sum(due), BigIntegerField()))  # SUM of bigint is numeric in PostgreSQL
        .values("units")
    )
    return Coalesce(Subquery(per_pair, output_field=BigIntegerField()), Value(0), output_field=BigIntegerField())
