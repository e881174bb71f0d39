"""Writes to the catalog itself: locations, items and products with their components."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from django.db import IntegrityError, models, transaction
from django.db.models.deletion import ProtectedError, RestrictedError

from apps.catalog.errors import InUse, NegativeStockRefused
from apps.catalog.models import Item, Location, Product, ProductComponent, StockLevel
from apps.catalog.signals import Tier, products_changed

log = structlog.get_logger("stockroom.catalog")


@dataclass(frozen=True)
class ComponentSpec:
    item: Item
    quantity: int


@transaction.atomic
def location_create(
    *, code: str, name: str, kind: str, allow_negative: bool = False, is_active: bool = True
) -> Location:
    return Location.objects.create(code=code, name=name, kind=kind, allow_negative=allow_negative, is_active=is_active)


@transaction.atomic
def location_update(*, location: Location, **fields: Any) -> Location:
    """Change a location; ``allow_negative`` is copied to its levels so the database keeps holding the rule."""
    for name, value in fields.items():
        setattr(location, name, value)
    location.save(update_fields=list(fields))
    if "allow_negative" in fields:
        try:
            with transaction.atomic():
                StockLevel.objects.filter(location=location).update(allow_negative=location.allow_negative)
        except IntegrityError as err:
            raise NegativeStockRefused(
                "Some items are below zero here; count or receive them before refusing negative stock.",
                field="allow_negative",
            ) from err
    return location


@transaction.atomic
def item_create(*, sku: str, name: str, unit: str, **extra: Any) -> Item:
    return Item.objects.create(sku=sku, name=name, unit=unit, **extra)


@transaction.atomic
def items_create(*, rows: Sequence[dict[str, Any]]) -> list[Item]:
    """Many new items at once (a catalog import): the same fields as ``item_create``, one INSERT per batch."""
    return Item.objects.bulk_create([Item(**row) for row in rows], batch_size=2000)


@transaction.atomic
def item_update(*, item: Item, **fields: Any) -> Item:
    for name, value in fields.items():
        setattr(item, name, value)
    item.save(update_fields=list(fields))
    return item


@transaction.atomic
def product_create(
    *, code: str, name: str, kind: str, components: Sequence[ComponentSpec], is_active: bool = True
) -> Product:
    product = Product.objects.create(code=code, name=name, kind=kind, is_active=is_active)
    ProductComponent.objects.bulk_create(
        [ProductComponent(product=product, item=c.item, quantity=c.quantity) for c in components]
    )
    return product


@transaction.atomic
def products_create(*, rows: Sequence[tuple[dict[str, Any], Sequence[ComponentSpec]]]) -> list[Product]:
    """Many new products with their make-up at once (a catalog import): as ``product_create``, in batches.

    A new product has no listing yet, so there is nothing to re-sync.
    """
    products = Product.objects.bulk_create([Product(**fields) for fields, _ in rows], batch_size=2000)
    ProductComponent.objects.bulk_create(
        [
            ProductComponent(product=product, item=c.item, quantity=c.quantity)
            for product, (_, components) in zip(products, rows, strict=True)
            for c in components
        ],
        batch_size=2000,
    )
    return products


@transaction.atomic
def product_update(*, product: Product, components: Sequence[ComponentSpec] | None = None, **fields: Any) -> Product:
    """Change a product; a new make-up replaces the components and every listing of it is re-synced."""
    for name, value in fields.items():
        setattr(product, name, value)
    if fields:
        product.save(update_fields=list(fields))
    if components is not None:
        current = {(c.item_id, c.quantity) for c in product.components.all()}
        wanted = {(c.item.pk, c.quantity) for c in components}
        if current != wanted:
            product.components.all().delete()
            ProductComponent.objects.bulk_create(
                [ProductComponent(product=product, item=c.item, quantity=c.quantity) for c in components]
            )
            products_changed.send(sender=Product, product_ids=[product.pk], priority=Tier.MANUAL, reason="components")
            log.info("product_components_changed", product=product.code)
    if "is_active" in fields:
        products_changed.send(sender=Product, product_ids=[product.pk], priority=Tier.MANUAL, reason="product_active")
    return product


def _describe_protected(err: ProtectedError | RestrictedError) -> list[str]:
    objects = getattr(err, "protected_objects", None) or getattr(err, "restricted_objects", [])
    return sorted({str(obj._meta.verbose_name_plural) for obj in objects})


def catalog_record_delete(*, instance: models.Model, label: str) -> None:
    """Delete a location, item or product; refused with 409 while stock, the ledger or listings use it."""
    try:
        with transaction.atomic():
            instance.delete()
    except (ProtectedError, RestrictedError) as err:
        used_by = _describe_protected(err)
        raise InUse(f"{label} is still used by: {', '.join(used_by)}. Deactivate it instead.", used_by=used_by) from err
