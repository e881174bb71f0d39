"""Query filters for the staff lists: by codes, as staff and integrators name things."""

from __future__ import annotations

import django_filters

from apps.catalog.models import Item, Location, Movement, Product, StockLevel


class LocationFilter(django_filters.FilterSet):
    class Meta:
        model = Location
        fields = ["kind", "is_active"]


class ItemFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(method="filter_search", label="SKU or name contains")

    class Meta:
        model = Item
        fields = ["unit", "is_active"]

    def filter_search(self, queryset, name, value):  # type: ignore[no-untyped-def]
        from django.db.models import Q

        return queryset.filter(Q(sku__icontains=value) | Q(name__icontains=value))


class ProductFilter(django_filters.FilterSet):
    item = django_filters.CharFilter(field_name="components__item__sku", label="Contains the item with this SKU")

    class Meta:
        model = Product
        fields = ["kind", "is_active"]


class MovementFilter(django_filters.FilterSet):
    item = django_filters.CharFilter(field_name="item__sku", label="Item SKU")
    location = django_filters.CharFilter(field_name="location__code", label="Location code")
    kind = django_filters.MultipleChoiceFilter(choices=Movement.Kind.choices)
    reference = django_filters.CharFilter()
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Movement
        fields = ["item", "location", "kind", "reference", "created_after", "created_before"]


class StockLevelFilter(django_filters.FilterSet):
    item = django_filters.CharFilter(field_name="item__sku", label="Item SKU")
    location = django_filters.CharFilter(field_name="location__code", label="Location code")

    class Meta:
        model = StockLevel
        fields = ["item", "location"]
