"""Locations, items and products (with their make-up) as tables, written through the catalog's services.

Stock is not a column: on hand comes from the ledger (receive or count it), never from a file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import models

from apps.catalog.api.serializers import _kind_problem
from apps.catalog.catalog_io.tables import NEW, UPDATE, Kind, KindPlan, Plan, RowOutcome, register, show
from apps.catalog.models import Item, Location, Product
from apps.catalog.services.catalog import (
    ComponentSpec,
    item_update,
    items_create,
    location_create,
    location_update,
    product_update,
    products_create,
)

Progress = Callable[[int], None] | None


def _tick(progress: Progress, count: int = 1) -> None:
    if progress:
        progress(count)


@register
class LocationKind(Kind):
    name = "locations"
    order = 10
    model = Location
    key = ("code",)
    columns = ("code", "name", "kind", "allow_negative", "is_active")
    field_columns = columns
    required = ("code", "name")

    def existing(self, keys: Sequence[str]) -> dict[str, models.Model]:
        return {location.code: location for location in Location.objects.filter(code__in=list(keys))}

    def apply(self, kind_plan: KindPlan, progress: Progress = None) -> None:
        for row in kind_plan.rows:
            kind_plan.writing = row
            if row.action == NEW:
                row.record = location_create(**row.values)
            elif row.action == UPDATE:
                assert isinstance(row.record, Location)
                row.record = location_update(location=row.record, **{c: row.values[c] for c in row.changes})
            _tick(progress)

    def export_rows(self, queryset: models.QuerySet[Any] | None = None) -> Iterable[list[str]]:
        rows = Location.objects.all() if queryset is None else Location.objects.filter(pk__in=queryset.values("pk"))
        for location in rows.order_by("code").values_list(*self.columns):
            yield [show(value) for value in location]


@register
class ItemKind(Kind):
    name = "items"
    order = 20
    model = Item
    key = ("sku",)
    columns = ("sku", "name", "unit", "safety_min", "safety_max", "is_active")
    field_columns = columns
    required = ("sku", "name")
    # Quantities in the ledger are counted in the item's unit.
    fixed = ("unit",)

    def existing(self, keys: Sequence[str]) -> dict[str, models.Model]:
        return {item.sku: item for item in Item.objects.filter(sku__in=list(keys))}

    def check(self, outcome: RowOutcome, plan: Plan) -> None:
        low = outcome.values.get("safety_min", getattr(outcome.record, "safety_min", 0))
        high = outcome.values.get("safety_max", getattr(outcome.record, "safety_max", None))
        if high is not None and low is not None and high < low:
            outcome.error("safety_max", f"is below safety_min ({low})")

    def apply(self, kind_plan: KindPlan, progress: Progress = None) -> None:
        new = [row for row in kind_plan.rows if row.action == NEW]
        for row, item in zip(new, items_create(rows=[row.values for row in new]), strict=True):
            row.record = item
        _tick(progress, len(new))
        for row in kind_plan.rows:
            if row.action == UPDATE:
                kind_plan.writing = row
                assert isinstance(row.record, Item)
                row.record = item_update(item=row.record, **{c: row.values[c] for c in row.changes})
                _tick(progress)

    def export_rows(self, queryset: models.QuerySet[Any] | None = None) -> Iterable[list[str]]:
        rows = Item.objects.all() if queryset is None else Item.objects.filter(pk__in=queryset.values("pk"))
        for item in rows.order_by("sku").values_list(*self.columns).iterator(chunk_size=5000):
            yield [show(value) for value in item]


# "2 x FLOUR-1KG; 1 x SUGAR" - the same words the admin's product list shows.
_COMPONENT = re.compile(r"^\s*(\d+)\s*[xX*\u00d7]\s*(\S.*?)\s*$")


def components_text(components: Sequence[tuple[str, int]]) -> str:
    return "; ".join(f"{quantity} x {sku}" for sku, quantity in components)


@register
class ProductKind(Kind):
    name = "products"
    order = 30
    model = Product
    key = ("code",)
    columns = ("code", "name", "kind", "components", "is_active")
    field_columns = ("code", "name", "kind", "is_active")
    required = ("code", "name", "kind", "components")

    def existing(self, keys: Sequence[str]) -> dict[str, models.Model]:
        products = Product.objects.filter(code__in=list(keys)).prefetch_related("components__item")
        return {product.code: product for product in products}

    def current(self, record: models.Model) -> dict[str, Any]:
        assert isinstance(record, Product)
        values = super().current(record)
        values["components"] = sorted((c.item.sku, c.quantity) for c in record.components.all())
        return values

    def read_extra(self, outcome: RowOutcome, plan: Plan) -> None:
        text = outcome.cells.get("components")
        if text is None or text == "":
            return
        components: dict[str, int] = {}
        for part in text.split(";"):
            if not part.strip():
                continue
            match = _COMPONENT.match(part)
            if match is None:
                outcome.error("components", f"“{part.strip()}” is not “quantity x SKU” (e.g. 2 x FLOUR-1KG)")
                continue
            quantity, sku = int(match.group(1)), match.group(2)
            if quantity < 1:
                outcome.error("components", f"{sku}: the quantity must be 1 or more")
            if sku in components:
                outcome.error("components", f"{sku} is named twice")
            components[sku] = quantity
        outcome.values["components"] = sorted(components.items())

    def check(self, outcome: RowOutcome, plan: Plan) -> None:
        components: list[tuple[str, int]] | None = outcome.values.get("components")
        if components is None and outcome.record is not None and "kind" in outcome.values:
            components = self.current(outcome.record)["components"]  # a new kind must fit the make-up it keeps
        if components is None:
            return
        skus = [sku for sku, _ in components]
        items = self._items(skus, plan)
        unknown = [sku for sku in skus if sku not in items]
        if unknown:
            outcome.error("components", f"unknown item(s) {', '.join(unknown)} (not in the catalog nor in items)")
            return
        kind = str(outcome.values.get("kind") or getattr(outcome.record, "kind", Product.Kind.STANDARD))
        problem = _kind_problem(kind, [{"item": items[sku], "quantity": quantity} for sku, quantity in components])
        if problem:
            outcome.error("components", problem)

    def _items(self, skus: Sequence[str], plan: Plan) -> dict[str, Any]:
        """Items as the make-up rules need them (sku, unit), from the catalog or from this import's items."""
        cache: dict[str, Any] = plan.cache.setdefault("items_by_sku", {})
        wanted = [sku for sku in skus if sku not in cache]
        if wanted:
            cache.update({item.sku: item for item in Item.objects.filter(sku__in=wanted)})
            items_plan = plan.for_kind("items")
            for row in items_plan.rows if items_plan else ():
                if row.action == NEW and row.key in wanted:
                    cache[row.key] = Item(sku=row.key, unit=row.values.get("unit") or Item.Unit.PIECE)
        return cache

    def plan(self, table: Any, plan: Plan, progress: Progress = None) -> KindPlan:
        # Look the referenced items up once for the whole file, not row by row.
        skus: set[str] = set()
        for _, cells in table.rows:
            parts = cells.get("components", "").split(";")
            skus.update(match.group(2) for part in parts if (match := _COMPONENT.match(part)))
        self._items(sorted(skus), plan)
        return super().plan(table, plan, progress)

    def apply(self, kind_plan: KindPlan, progress: Progress = None) -> None:
        skus = {sku for row in kind_plan.rows for sku, _ in row.values.get("components") or ()}
        items = {item.sku: item for item in Item.objects.filter(sku__in=sorted(skus))}

        def make_up(row: RowOutcome) -> list[ComponentSpec]:
            return [ComponentSpec(item=items[sku], quantity=quantity) for sku, quantity in row.values["components"]]

        new = [row for row in kind_plan.rows if row.action == NEW]
        fields = ("code", "name", "kind", "is_active")
        specs = [({f: row.values[f] for f in fields if f in row.values}, make_up(row)) for row in new]
        created = products_create(rows=specs)
        for row, product in zip(new, created, strict=True):
            row.record = product
        _tick(progress, len(new))
        for row in kind_plan.rows:
            if row.action != UPDATE:
                continue
            kind_plan.writing = row
            assert isinstance(row.record, Product)
            changed = {c: row.values[c] for c in row.changes if c != "components"}
            components = make_up(row) if "components" in row.changes else None
            row.record = product_update(product=row.record, components=components, **changed)
            _tick(progress)

    def export_rows(self, queryset: models.QuerySet[Any] | None = None) -> Iterable[list[str]]:
        rows = Product.objects.all() if queryset is None else Product.objects.filter(pk__in=queryset.values("pk"))
        for product in rows.order_by("code").prefetch_related("components__item").iterator(chunk_size=2000):
            make_up = sorted((c.item.sku, c.quantity) for c in product.components.all())
            yield [product.code, product.name, product.kind, components_text(make_up), show(product.is_active)]
