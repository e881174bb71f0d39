"""Orders, their lines, the stock they hold (reservations) and marketplace order events.

Invariant kept by the services and checked by the tests: for every (item, location),
``StockLevel.reserved`` equals the sum of ``Reservation.open_quantity`` over the rows there.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from apps.catalog.models import Item, Location, Product
from apps.channels.models import Channel, Listing


class Order(models.Model):
    class Mode(models.TextChoices):
        RESERVE = "reserve", "Reserve (checkout; refused when short)"
        IMPORT = "import", "Import (already sold; never refused)"

    class Status(models.TextChoices):
        RESERVED = "reserved", "Reserved"
        CONFIRMED = "confirmed", "Confirmed"
        PARTIALLY_FULFILLED = "partially_fulfilled", "Partially fulfilled"
        FULFILLED = "fulfilled", "Fulfilled"
        CANCELLED = "cancelled", "Cancelled"
        EXPIRED = "expired", "Expired"
        RETURNED = "returned", "Returned"

    # Statuses in which the order still holds stock.
    OPEN_STATUSES = (Status.RESERVED, Status.CONFIRMED, Status.PARTIALLY_FULFILLED)

    # Indexed by order_unique_channel_external_id, which leads with it.
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="orders", db_index=False)
    external_id = models.CharField(max_length=120)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.RESERVE)
    status = models.CharField(max_length=30, choices=Status.choices, default=Status.RESERVED)
    # The hold lapses then unless the order is confirmed; null = no expiry (imports, confirmed orders).
    expires_at = models.DateTimeField(null=True, blank=True)
    flagged = models.BooleanField(default=False, help_text="Needs a person: oversold, refused by a supplier...")
    flag_reason = models.TextField(blank=True, default="")
    # When the platform last showed this order (webhook, poll or the order truth sweep); null for
    # orders that did not come from a platform connector. The sweep re-reads open orders not shown for a while.
    platform_seen_at = models.DateTimeField(null=True, blank=True)
    # The platform's own time of the newest state applied: an older one arriving later (a reordered
    # webhook, a sweep's read overtaken by a webhook) is not applied over it.
    platform_updated_at = models.DateTimeField(null=True, blank=True)
    # The platform location it ships from, as last heard (a Shopify fulfillment order's location): its stock is
    # reserved at the Stockroom locations that one maps to, and moves when the platform moves the order.
    platform_location = models.CharField(max_length=100, blank=True, default="", db_default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "external_id"], name="order_unique_channel_external_id"),
        ]
        indexes = [
            # The hold-expiry job scans only live holds.
            models.Index(fields=["expires_at"], name="order_hold_expiry", condition=Q(status="reserved")),
            models.Index(fields=["external_id"], name="order_external_id"),
            # The order truth sweep scans the open imported orders of a channel, least recently shown first.
            models.Index(
                fields=["channel", "platform_seen_at"],
                name="order_platform_sweep",
                condition=Q(mode="import", status__in=["reserved", "confirmed", "partially_fulfilled"]),
            ),
        ]

    def __str__(self) -> str:
        return f"order {self.pk} ({self.external_id})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


class OrderLine(models.Model):
    # Indexed by order_line_unique_sku, which leads with it.
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines", db_index=False)
    listing = models.ForeignKey(Listing, null=True, blank=True, on_delete=models.SET_NULL, related_name="order_lines")
    channel_sku = models.CharField(max_length=100)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="order_lines")
    quantity = models.PositiveIntegerField()
    fulfilled_quantity = models.PositiveIntegerField(default=0)
    returned_quantity = models.PositiveIntegerField(default=0)
    # Units of an imported order that no stock covered (the oversell); never reserved.
    unallocated_quantity = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "channel_sku"], name="order_line_unique_sku"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_line_quantity_positive"),
            models.CheckConstraint(
                condition=Q(fulfilled_quantity__lte=F("quantity") - F("unallocated_quantity")),
                name="order_line_fulfilled_within_allocated",
            ),
            models.CheckConstraint(
                condition=Q(returned_quantity__lte=F("fulfilled_quantity")), name="order_line_returned_within_fulfilled"
            ),
            models.CheckConstraint(
                condition=Q(unallocated_quantity__lte=F("quantity")), name="order_line_unallocated_within_quantity"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.channel_sku}"

    @property
    def allocated_quantity(self) -> int:
        return self.quantity - self.unallocated_quantity


class Reservation(models.Model):
    """Stock of one item at one location held for one order line, in the item's base units.

    ``per_unit`` base units make one product unit, so a unit is always served from one location.
    Open (still held) = quantity - fulfilled - released.
    """

    line = models.ForeignKey(OrderLine, on_delete=models.CASCADE, related_name="reservations")
    # Indexed by reservation_item_location, which leads with it.
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="reservations", db_index=False)
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="reservations")
    per_unit = models.PositiveIntegerField()
    quantity = models.PositiveIntegerField()
    fulfilled = models.PositiveIntegerField(default=0)
    released = models.PositiveIntegerField(default=0)
    returned = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["line", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="reservation_quantity_positive"),
            models.CheckConstraint(condition=Q(per_unit__gt=0), name="reservation_per_unit_positive"),
            models.CheckConstraint(
                condition=Q(fulfilled__gte=0) & Q(released__gte=0) & Q(returned__gte=0),
                name="reservation_counters_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(quantity__gte=F("fulfilled") + F("released")), name="reservation_within_quantity"
            ),
            models.CheckConstraint(condition=Q(returned__lte=F("fulfilled")), name="reservation_returned_le_fulfilled"),
        ]
        indexes = [models.Index(fields=["item", "location"], name="reservation_item_location")]

    def __str__(self) -> str:
        return f"{self.quantity} of {self.item.sku} at {self.location.code} for order line {self.line_id}"

    @property
    def open_quantity(self) -> int:
        return self.quantity - self.fulfilled - self.released


class OrderEvent(models.Model):
    """A marketplace's event about one of its orders, applied exactly once, in its own time."""

    class Type(models.TextChoices):
        CREATE = "create", "Create"
        CONFIRM = "confirm", "Confirm"
        CANCEL = "cancel", "Cancel"
        FULFIL = "fulfil", "Fulfil"
        RETURN = "return", "Return"

    class Status(models.TextChoices):
        PARKED = "parked", "Parked (waiting for its precondition)"
        APPLIED = "applied", "Applied"
        REJECTED = "rejected", "Rejected"

    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="order_events")
    external_id = models.CharField(max_length=120)
    sequence = models.BigIntegerField()
    type = models.CharField(max_length=20, choices=Type.choices)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PARKED)
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    detail = models.TextField(blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["channel", "external_id", "sequence"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "external_id", "sequence"], name="order_event_unique_channel_order_sequence"
            ),
            models.CheckConstraint(condition=Q(sequence__gte=0), name="order_event_sequence_not_negative"),
        ]
        indexes = [models.Index(fields=["status", "received_at"], name="order_event_status")]

    def __str__(self) -> str:
        return f"{self.type} #{self.sequence} of {self.external_id}"


class WebhookDelivery(models.Model):
    """A platform's webhook delivery, kept so that a redelivery (the platform retries) is applied once.

    Stored in the transaction that applies its orders: a delivery that failed midway is not
    recorded, and its retry is applied in full.
    """

    # Indexed by webhook_delivery_unique, which leads with it.
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="webhook_deliveries", db_index=False)
    delivery_id = models.CharField(max_length=200)
    topic = models.CharField(max_length=100, blank=True, default="")
    orders = models.PositiveIntegerField(default=0, help_text="Orders the delivery carried.")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["channel", "delivery_id"], name="webhook_delivery_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.topic or 'delivery'} {self.delivery_id}"


class PlatformOrderRejection(models.Model):
    """A platform's order that could not be applied (a SKU not listed, an implausible quantity, a fulfilment
    beyond the shelf, an id too long to store), kept with the reason and the order as the platform sent it,
    so that staff see it and nothing is lost: applying it again (staff retry, the platform's next update,
    or linking the missing listing) resolves it.

    An order taken in part (some lines not listed yet, a line cut below what already shipped) is
    imported with its other lines and kept here too, with ``order`` set and each line left out in
    ``lines`` (``{"sku", "external_id", "quantity", "reason"}``).
    """

    # Indexed by platform_order_rejection_unique, which leads with it.
    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="platform_order_rejections", db_index=False
    )
    # The platform's id; one too long for an order (over 120 characters) is shortened with a hash
    # (``stored_external_id``) and kept whole in the payload.
    external_id = models.CharField(max_length=120)
    number = models.CharField(max_length=60, blank=True, default="")
    platform_status = models.CharField(max_length=30, blank=True, default="")
    reason = models.TextField()
    lines = models.JSONField(default=list, blank=True, help_text="Lines left out of an order taken in part.")
    payload = models.JSONField(default=dict, help_text="The order as the platform last showed it.")
    source = models.CharField(max_length=20, blank=True, default="")
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="rejections")
    seen = models.PositiveIntegerField(default=1, help_text="How many times it was refused.")
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-last_seen_at"]
        verbose_name = "refused platform order"
        constraints = [
            models.UniqueConstraint(fields=["channel", "external_id"], name="platform_order_rejection_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.number or self.external_id} of {self.channel.code}"


class PlatformOrderTombstone(models.Model):
    """A cancel (or delete) of a platform order Stockroom had not seen, kept so that a create or update
    arriving later (a retry after an outage, a reordered webhook) is not imported unless the platform
    changed the order after the cancel. Pruned after a long window, like webhook deliveries."""

    # Indexed by platform_order_tombstone_unique, which leads with it.
    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="platform_order_tombstones", db_index=False
    )
    external_id = models.CharField(max_length=120)  # as ``PlatformOrderRejection.external_id``
    platform_updated_at = models.DateTimeField(null=True, blank=True, help_text="The platform's time of the cancel.")
    source = models.CharField(max_length=20, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "cancelled platform order not seen"
        verbose_name_plural = "cancelled platform orders not seen"
        constraints = [
            models.UniqueConstraint(fields=["channel", "external_id"], name="platform_order_tombstone_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.external_id} of {self.channel_id} (cancelled unseen)"
