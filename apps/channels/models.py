"""Sales channels, their listings, and the sync work that keeps listings true."""

from __future__ import annotations

import hashlib

from django.db import models
from django.db.models import Q

from apps.catalog.models import Location, Product


class Channel(models.Model):
    class Kind(models.TextChoices):
        WEBSHOP = "webshop", "Own webshop"
        MARKETPLACE = "marketplace", "Marketplace"
        DELIVERY = "delivery", "Delivery app"
        POS = "pos", "Point of sale"

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.WEBSHOP)
    push_url = models.URLField(max_length=500, blank=True, default="")
    # Signs pushes (HMAC-SHA256). Write-only through the API, never shown in full.
    secret = models.CharField(max_length=200, blank=True, default="")
    rate_per_s = models.FloatField(default=5.0)
    burst = models.PositiveIntegerField(default=10)
    batch_size = models.PositiveIntegerField(default=100)
    coefficient = models.DecimalField(max_digits=4, decimal_places=3, default=1)
    buffer = models.PositiveIntegerField(default=0)
    locations = models.ManyToManyField(Location, through="ChannelLocation", related_name="channels")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(coefficient__gte=0) & Q(coefficient__lte=1), name="channel_coefficient_0_1"
            ),
            models.CheckConstraint(condition=Q(rate_per_s__gt=0), name="channel_rate_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    @property
    def shard(self) -> int:
        """A stable shard number, so one channel always lands on the same sync queue."""
        from django.conf import settings

        digest = hashlib.sha256(self.code.encode()).digest()
        return int.from_bytes(digest[:4], "big") % settings.STOCKROOM["SYNC_SHARDS"]


class ChannelLocation(models.Model):
    """The locations whose stock a channel may sell, in the order orders take from them."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="channel_locations")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="channel_locations")
    priority = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["channel", "priority", "location"]
        constraints = [models.UniqueConstraint(fields=["channel", "location"], name="channel_location_unique")]

    def __str__(self) -> str:
        return f"{self.channel_id} sells from {self.location_id} (priority {self.priority})"


class Listing(models.Model):
    """One channel SKU selling one product, with optional overrides of the channel defaults."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="listings")
    channel_sku = models.CharField(max_length=100)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="listings")
    coefficient = models.DecimalField(max_digits=4, decimal_places=3, null=True, blank=True)
    buffer = models.PositiveIntegerField(null=True, blank=True)
    max_qty = models.PositiveIntegerField(null=True, blank=True)
    end_when = models.PositiveIntegerField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    last_pushed_qty = models.IntegerField(null=True, blank=True)
    last_pushed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["channel", "channel_sku"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "channel_sku"], name="listing_unique_channel_sku"),
            models.CheckConstraint(
                condition=Q(coefficient__isnull=True) | (Q(coefficient__gte=0) & Q(coefficient__lte=1)),
                name="listing_coefficient_0_1",
            ),
        ]
        indexes = [models.Index(fields=["product"], name="listing_product")]

    def __str__(self) -> str:
        return f"{self.channel_id}:{self.channel_sku}"
