"""Available to promise, defined once (docs/architecture.md, "Stock, ATP and listing quantity").

    ATP(item, location) = max(0, on_hand - reserved - safety), and 0 where the location does not
    sell: inactive, or its stock past ``stock_valid_until`` (a supplier feed beyond its max age).
    ATP(product, location) = min over components floor(ATP(item, location) / quantity).

The rule has three renderings that must agree (``apps/catalog/tests/test_atp_forms.py``):
``atp_sql`` for hand-written statements, ``atp_expression`` for querysets and ``atp`` for Python.
A missing level counts as zero stock.

The product rule likewise: ``product_atp_sql`` (an aggregate over a product's component rows, one
group per product and location), ``product_atp_expression`` (a subquery for querysets of products)
and ``product_atp`` / ``product_atp_at`` (Python, over item ATP already read). Every place that needs
a product's ATP (availability, channel quantities, an order's allocation and import cap) uses one of
them; a product without components has nothing to promise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from django.db.models import BigIntegerField, Case, ExpressionWrapper, F, Min, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce, Greatest, Now
from django.utils import timezone

if TYPE_CHECKING:
    from apps.catalog.models import Location, StockLevel

Series = TypeVar("Series")


def location_sells(*, is_active: bool, stock_valid_until: datetime | None, now: datetime | None = None) -> bool:
    """Whether stock at a location counts for sale at all."""
    if not is_active:
        return False
    return stock_valid_until is None or stock_valid_until > (now or timezone.now())


def atp(*, on_hand: int, reserved: int, safety: int, location_sells: bool = True) -> int:
    """ATP of one level, in Python."""
    return max(0, on_hand - reserved - safety) if location_sells else 0


def product_atp(*, components: Mapping[int, int], item_atp: Mapping[int, int]) -> int:
    """ATP of a product at one location from its components' ATP there: {item_id: base units per product}."""
    if not components:
        return 0
    return min(item_atp.get(item, 0) // quantity for item, quantity in components.items())


def product_atp_at(
    *, components: Iterable[tuple[int, int]], atp: Mapping[tuple[int, int], int], location_id: int
) -> int:
    """``product_atp`` at one location over item ATP keyed by (item_id, location_id), as an order's
    resolution holds it; ``components``: (item_id, base units per product) pairs."""
    return min((atp.get((item, location_id), 0) // quantity for item, quantity in components), default=0)


def location_sells_sql(location: str = "loc") -> str:
    """``location_sells`` as a SQL condition over a location aliased ``location``."""
    return f"({location}.is_active AND ({location}.stock_valid_until IS NULL OR {location}.stock_valid_until > now()))"


def atp_sql(level: str = "s", location: str = "loc") -> str:
    """ATP as a SQL expression over a stock level aliased ``level`` and its location aliased ``location``.

    Either may come from a LEFT JOIN: a missing level is zero stock, a missing location sells nothing.
    """
    return (
        f"CASE WHEN {location_sells_sql(location)} "
        f"THEN GREATEST(0, COALESCE({level}.on_hand - {level}.reserved - {level}.safety, 0)) ELSE 0 END"
    )


def product_atp_sql(level: str = "s", location: str = "loc", component: str = "pc") -> str:
    """Product ATP as a SQL aggregate: over the rows of a product's components (``component``, a
    catalog_productcomponent) at a location (``location``), each with the component's level there
    (``level``, from a LEFT JOIN: a missing level is zero stock), grouped by product and location.
    A product without components has no group: read it as 0."""
    return f"MIN(({atp_sql(level, location)}) / {component}.quantity)"


def product_atp_expression(location: Any, product: str = "pk") -> Coalesce:
    """Product ATP at a location as an ORM expression on Product querysets (``product``: the outer field
    holding the product's id; ``location``: a location id, or an expression valid inside a subquery over
    the product's components)."""
    from apps.catalog.models import ProductComponent, StockLevel

    level = StockLevel.objects.filter(item_id=OuterRef("item_id"), location_id=location).annotate(a=atp_expression())
    per_component = ExpressionWrapper(
        Coalesce(Subquery(level.values("a")[:1]), Value(0), output_field=BigIntegerField()) / F("quantity"),
        output_field=BigIntegerField(),
    )
    least = (
        ProductComponent.objects.filter(product_id=OuterRef(product))
        .order_by()
        .values("product_id")
        .annotate(atp=Min(per_component))
        .values("atp")
    )
    return Coalesce(Subquery(least, output_field=BigIntegerField()), Value(0), output_field=BigIntegerField())


def atp_expression(prefix: str = "") -> Case:
    """ATP as an ORM expression on StockLevel (``prefix``: the path to a StockLevel, e.g. ``"levels__"``)."""
    sells = Q(**{f"{prefix}location__is_active": True}) & (
        Q(**{f"{prefix}location__stock_valid_until__isnull": True})
        | Q(**{f"{prefix}location__stock_valid_until__gt": Now()})
    )
    return Case(
        When(sells, then=Greatest(Value(0), F(f"{prefix}on_hand") - F(f"{prefix}reserved") - F(f"{prefix}safety"))),
        default=Value(0),
        output_field=BigIntegerField(),
    )


def atp_vectorised(*, on_hand: Series, reserved: Series, safety: Any, location_sells: Any = True) -> Series:
    """ATP over pandas objects (Series or frames with one column per location), same rule as ``atp``."""
    value: Any = (on_hand - reserved - safety).clip(lower=0)  # type: ignore[operator]
    return value * location_sells  # type: ignore[no-any-return]


def level_atp(level: StockLevel, location: Location | None = None) -> int:
    """ATP of a StockLevel instance (its location is loaded if not given)."""
    where = location if location is not None else level.location
    sells = location_sells(is_active=where.is_active, stock_valid_until=where.stock_valid_until)
    return atp(on_hand=level.on_hand, reserved=level.reserved, safety=level.safety, location_sells=sells)


def locations_selling(location_ids: Iterable[int]) -> set[int]:
    """Which of these locations sell now (one query)."""
    from apps.catalog.models import Location

    now = timezone.now()
    rows = Location.objects.filter(id__in=sorted(set(location_ids))).values_list("id", "is_active", "stock_valid_until")
    return {pk for pk, active, until in rows if location_sells(is_active=active, stock_valid_until=until, now=now)}


def levels_atp(levels: Iterable[StockLevel]) -> dict[tuple[int, int], int]:
    """ATP of many levels (locked ones, say), their locations read in one query: {(item_id, location_id): atp}."""
    levels = list(levels)
    selling = locations_selling(level.location_id for level in levels)
    return {
        (lv.item_id, lv.location_id): atp(
            on_hand=lv.on_hand, reserved=lv.reserved, safety=lv.safety, location_sells=lv.location_id in selling
        )
        for lv in levels
    }
