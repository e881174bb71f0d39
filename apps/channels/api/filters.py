"""Query filters of the listings list: by channel and product code, and what changed since a moment."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from apps.channels.models import Listing


class ListingFilter(django_filters.FilterSet):
    channel = django_filters.CharFilter(field_name="channel__code", label="Channel code (staff)")
    channel__code = django_filters.CharFilter(field_name="channel__code", label="Channel code (older name)")
    product = django_filters.CharFilter(field_name="product__code", label="Product code")
    product__code = django_filters.CharFilter(field_name="product__code", label="Product code (older name)")
    updated_since = django_filters.IsoDateTimeFilter(
        method="filter_updated_since",
        label="Listings whose settings changed, or whose quantity was last pushed, at or after this ISO 8601 time",
    )

    class Meta:
        model = Listing
        fields = ["channel", "channel__code", "product", "product__code", "channel_sku", "is_active", "updated_since"]

    def filter_updated_since(self, queryset: QuerySet[Listing], name: str, value: object) -> QuerySet[Listing]:
        return queryset.filter(Q(updated_at__gte=value) | Q(last_pushed_at__gte=value))
