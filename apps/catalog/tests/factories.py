"""Factories for the catalog: locations, items, products with components, and stocked levels."""

from __future__ import annotations

import factory
from django.db import transaction

from apps.catalog.locks import levels_for_update
from apps.catalog.models import Item, Location, Movement, Product, ProductComponent, StockLevel
from apps.catalog.signals import Tier
from apps.catalog.stock.ledger import MovementSpec, movements_apply


class LocationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Location
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"loc{n}")
    name = factory.LazyAttribute(lambda o: f"Location {o.code}")
    kind = Location.Kind.WAREHOUSE


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Item
        django_get_or_create = ("sku",)

    sku = factory.Sequence(lambda n: f"ITEM-{n}")
    name = factory.LazyAttribute(lambda o: f"Item {o.sku}")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"PROD-{n}")
    name = factory.LazyAttribute(lambda o: f"Product {o.code}")


def product_of(code: str, components: dict[Item, int], kind: str | None = None) -> Product:
    """A product made of these items in these base-unit quantities."""
    if kind is None:
        kind = Product.Kind.BUNDLE if len(components) > 1 else Product.Kind.STANDARD
    product = ProductFactory(code=code, kind=kind)
    for item, quantity in components.items():
        ProductComponent.objects.get_or_create(product=product, item=item, defaults={"quantity": quantity})
    return product


def stock(item: Item, location: Location, on_hand: int, *, safety: int = 0) -> StockLevel:
    """Put stock on the shelf through the ledger, as a receipt, so ledger and level agree."""
    with transaction.atomic():
        (level,) = levels_for_update([(item.id, location.id)])
        delta = on_hand - level.on_hand
        if delta:
            movements_apply(
                movements=[MovementSpec(item.id, location.id, Movement.Kind.RECEIPT, on_hand_delta=delta)],
                actor="test",
                priority=Tier.MANUAL,
                reason="test stock",
            )
        if safety != level.safety:
            StockLevel.objects.filter(pk=level.pk).update(safety=safety)
    level.refresh_from_db()
    return level
