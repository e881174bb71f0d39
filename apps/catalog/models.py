"""Locations, items, products and the stock they share: levels and the append-only ledger."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.catalog.stock.atp import level_atp


class Location(models.Model):
    class Kind(models.TextChoices):
        STORE = "store", "Store"
        WAREHOUSE = "warehouse", "Warehouse"
        SUPPLIER = "supplier", "Supplier (drop-ship)"

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.STORE)
    # Stores record point-of-sale facts even past zero when this is on.
    allow_negative = models.BooleanField(default=False)
    # Stock here counts for sale only until then (supplier feeds past their max age); null = always.
    stock_valid_until = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        # Merchants and viewers hold it (apps/staff/roles.py); anyone else sees only the locations
        # assigned to them (LocationMember), see apps/catalog/access.py.
        permissions = [("view_all_locations", "Can see every location, not only the ones assigned")]

    def __str__(self) -> str:
        return f"{self.code} ({self.get_kind_display()})"


class LocationMember(models.Model):
    """A user who works at a location: store staff see and work at their assigned locations only."""

    # No index of its own: location_member_unique leads with the user.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="location_memberships", db_index=False
    )
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="members")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["location__code"]
        constraints = [models.UniqueConstraint(fields=["user", "location"], name="location_member_unique")]

    def __str__(self) -> str:
        return f"{self.user} at {self.location.code}"


class Item(models.Model):
    """A physically counted thing, counted in its base unit."""

    class Unit(models.TextChoices):
        PIECE = "piece", "piece"
        GRAM = "g", "gram"
        MILLILITRE = "ml", "millilitre"

    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    unit = models.CharField(max_length=10, choices=Unit.choices, default=Unit.PIECE)
    # Bounds for the forecast safety stock (docs/architecture.md, "Forecasting and safety stock"), in base units.
    safety_min = models.PositiveIntegerField(default=0)
    safety_max = models.PositiveIntegerField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class Product(models.Model):
    """What channels sell: one or more items, each in a quantity of base units."""

    class Kind(models.TextChoices):
        STANDARD = "standard", "Standard (1 x item)"
        MULTIPACK = "multipack", "Multipack (n x item)"
        WEIGHTED = "weighted", "Weighted (cut from a bulk item)"
        BUNDLE = "bundle", "Bundle (several items)"

    code = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.STANDARD)
    items = models.ManyToManyField(Item, through="ProductComponent", related_name="products")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class ProductComponent(models.Model):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="components")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="components")
    quantity = models.PositiveIntegerField(help_text="Base units of the item in one product.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["product", "item"], name="component_unique_item"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="component_quantity_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.item.sku} in {self.product.code}"


class StockLevel(models.Model):
    """Denormalised counters for one item at one location; the ledger is the truth behind them."""

    # No single-column indexes: level_unique_item_location and level_location_item lead with each.
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="levels", db_index=False)
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="levels", db_index=False)
    on_hand = models.BigIntegerField(default=0)
    reserved = models.BigIntegerField(default=0)
    safety = models.BigIntegerField(default=0, help_text="Effective safety stock (forecast or override).")
    # Copied from the location so that the database itself can hold the rule.
    allow_negative = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "location"], name="level_unique_item_location"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="level_reserved_not_negative"),
            models.CheckConstraint(condition=Q(safety__gte=0), name="level_safety_not_negative"),
            models.CheckConstraint(
                condition=Q(on_hand__gte=0) | Q(allow_negative=True), name="level_on_hand_not_negative"
            ),
        ]
        indexes = [models.Index(fields=["location", "item"], name="level_location_item")]

    def __str__(self) -> str:
        return f"{self.item.sku} at {self.location.code}"

    @property
    def offline_usable(self) -> int:
        return self.on_hand - self.reserved

    @property
    def atp(self) -> int:
        """Available to promise (``apps.catalog.stock.atp``): 0 where the location does not sell."""
        return level_atp(self)


# Movements written by a supplier's own feed run carry this reference (a supplier's stock falling
# in its feed is its sales elsewhere; staff changes of mappings or trust carry another).
FEED_RUN_REFERENCE = "feed_run:"

# The key scope of the references Stockroom writes for its own documents (counts, transfers,
# receipts, opening stock). A client's key is stored under its principal's scope ("staff:<user
# id>", "channel:<id>"), so no client can take a document's reference, nor another client's key.
DOCUMENT_KEY_SCOPE = ""


class Movement(models.Model):
    """One append-only ledger row. Summing them reproduces every StockLevel."""

    class Kind(models.TextChoices):
        RECEIPT = "receipt", "Receipt"
        COUNT = "count", "Stock count"
        ADJUSTMENT = "adjustment", "Adjustment"
        POS_SALE = "pos_sale", "Point-of-sale sale"
        RESERVE = "reserve", "Reservation"
        RELEASE = "release", "Reservation released"
        FULFIL = "fulfil", "Fulfilment"
        IMPORT_SALE = "import_sale", "Imported sale"
        RETURN = "return", "Return"
        SUPPLIER_FEED = "supplier_feed", "Supplier feed"
        TRANSFER_OUT = "transfer_out", "Transfer shipped out"
        TRANSFER_IN = "transfer_in", "Transfer received"
        # Goods in transit back on the source's books when their transfer is cancelled (returned or lost).
        TRANSFER_CANCEL = "transfer_cancel", "Transfer cancelled in transit"

    # item: no index of its own, movement_item_location_time leads with it (fewer indexes per ledger row)
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="movements", db_index=False)
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="movements")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    on_hand_delta = models.BigIntegerField(default=0)
    reserved_delta = models.BigIntegerField(default=0)
    reference = models.CharField(max_length=120, blank=True, default="")
    actor = models.CharField(max_length=120, blank=True, default="")
    note = models.CharField(max_length=500, blank=True, default="")
    idempotency_key = models.CharField(max_length=120, null=True, blank=True)
    # Whose key it is (DOCUMENT_KEY_SCOPE for Stockroom's own references); unique together with it.
    key_scope = models.CharField(max_length=60, blank=True, default=DOCUMENT_KEY_SCOPE, db_default=DOCUMENT_KEY_SCOPE)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["item", "location", "created_at"], name="movement_item_location_time"),
            models.Index(fields=["reference"], name="movement_reference"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["key_scope", "idempotency_key"], name="movement_unique_scoped_key"),
            models.CheckConstraint(
                condition=~Q(on_hand_delta=0) | ~Q(reserved_delta=0) | Q(kind="count"),
                name="movement_moves_something",
            ),
        ]

    def __str__(self) -> str:
        deltas = f"on hand {self.on_hand_delta:+}, reserved {self.reserved_delta:+}"
        return f"{self.get_kind_display()} of {self.item.sku} at {self.location.code} ({deltas})"


class Incident(models.Model):
    """Something staff must look at: an oversell, a sale into reserved stock, ledger drift, a supplier refusal."""

    class Kind(models.TextChoices):
        OVERSELL = "oversell", "Oversell (imported order beyond stock)"
        POS_INTO_RESERVED = "pos_into_reserved", "Store sale ate reserved stock"
        LEDGER_DRIFT = "ledger_drift", "Ledger does not sum to the level"
        SUPPLIER_REFUSAL = "supplier_refusal", "Supplier refused a drop-ship order"
        FEED_REFUSED = "feed_refused", "Supplier feed refused"
        MAPPING_SUSPECT = "mapping_suspect", "Supplier mapping suspect"
        IMPLAUSIBLE_IMPORT = "implausible_import", "Implausible import refused"
        UNREADABLE_SECRET = "unreadable_secret", "Stored secret unreadable (key changed)"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"

    kind = models.CharField(max_length=30, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    item = models.ForeignKey(Item, null=True, blank=True, on_delete=models.PROTECT, related_name="incidents")
    location = models.ForeignKey(Location, null=True, blank=True, on_delete=models.PROTECT, related_name="incidents")
    shortfall = models.BigIntegerField(default=0, help_text="Units promised that stock cannot cover.")
    reference = models.CharField(max_length=120, blank=True, default="", db_index=True)
    detail = models.TextField(blank=True, default="")
    opened_at = models.DateTimeField(auto_now_add=True, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=120, blank=True, default="")
    resolution_note = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["status", "-opened_at"]
        indexes = [models.Index(fields=["status", "kind"], name="incident_status_kind")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"


# Stock work documents (receipts, adjustments, transfers). Each books its ledger rows through the
# stock owner with the reference ``<document>:<pk>``, which is how the admin links a document to them.


class Receipt(models.Model):
    """An expected delivery at a location, received in one or more parts."""

    class Status(models.TextChoices):
        EXPECTED = "expected", "Expected"
        PARTIAL = "partial", "Partly received"
        RECEIVED = "received", "Received"
        CANCELLED = "cancelled", "Cancelled"

    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="receipts")
    # Free text: the catalog knows no suppliers (suppliers sit above it); the name is what the merchant reads.
    supplier = models.CharField(max_length=200, blank=True, default="")
    reference = models.CharField(max_length=120, blank=True, default="", help_text="Delivery note or PO number.")
    expected_on = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.EXPECTED)
    note = models.CharField(max_length=500, blank=True, default="")
    created_by = models.CharField(max_length=120, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "expected_on"], name="receipt_status_expected")]

    def __str__(self) -> str:
        return f"Receipt {self.pk} {self.reference or ''}".strip()

    @property
    def ledger_reference(self) -> str:
        return f"receipt:{self.pk}"


class ReceiptLine(models.Model):
    receipt = models.ForeignKey(Receipt, on_delete=models.CASCADE, related_name="lines")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="receipt_lines")
    expected = models.BigIntegerField(help_text="Units (base unit) the supplier announced.")
    received = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["receipt", "item"], name="receipt_line_unique_item"),
            models.CheckConstraint(condition=Q(expected__gte=0), name="receipt_line_expected_not_negative"),
            models.CheckConstraint(condition=Q(received__gte=0), name="receipt_line_received_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.item} x {self.expected}"

    @property
    def due(self) -> int:
        return max(0, self.expected - self.received)

    @property
    def over_delivered(self) -> int:
        """Units received beyond what was announced (booked, after the clerk confirmed them)."""
        return max(0, self.received - self.expected)


class Adjustment(models.Model):
    """A correction of on_hand with its reason; the ledger row it booked is ``movement``."""

    class Reason(models.TextChoices):
        DAMAGED = "damaged", "Damaged"
        LOST = "lost", "Lost"
        FOUND = "found", "Found"
        CORRECTION = "correction", "Correction"

    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="adjustments")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="adjustments")
    quantity = models.BigIntegerField(help_text="Units added (+) or removed (-).")
    reason = models.CharField(max_length=12, choices=Reason.choices)
    note = models.CharField(max_length=500, blank=True, default="")
    movement = models.OneToOneField(Movement, on_delete=models.PROTECT, related_name="adjustment")
    actor = models.CharField(max_length=120, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # Damaged and lost goods leave, found goods come back; a correction goes either way.
            models.CheckConstraint(
                condition=(Q(reason__in=["damaged", "lost"]) & Q(quantity__lt=0))
                | (Q(reason="found") & Q(quantity__gt=0))
                | (Q(reason="correction") & ~Q(quantity=0)),
                name="adjustment_sign_fits_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_reason_display()} {self.quantity:+} {self.item.sku} at {self.location.code}"


class Transfer(models.Model):
    """Stock moving between two locations: out of the source when shipped, into the destination when received."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        IN_TRANSIT = "in_transit", "In transit"
        RECEIVED = "received", "Received"
        CANCELLED = "cancelled", "Cancelled"

    class CancelOutcome(models.TextChoices):
        """What became of goods in transit when their transfer was cancelled (blank: cancelled as a draft)."""

        RETURNED = "returned", "Returned to source"
        LOST = "lost", "Lost in transit"

    source = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="transfers_out")
    destination = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="transfers_in")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT)
    reference = models.CharField(max_length=120, blank=True, default="")
    created_by = models.CharField(max_length=120, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancel_outcome = models.CharField(max_length=10, choices=CancelOutcome.choices, blank=True, default="")
    cancelled_by = models.CharField(max_length=120, blank=True, default="")

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(source=models.F("destination")), name="transfer_between_two_places"),
            models.CheckConstraint(
                condition=Q(shipped_at__isnull=True) | ~Q(status="draft"), name="transfer_shipped_not_draft"
            ),
            # Only a transfer cancelled after shipping says what became of its goods.
            models.CheckConstraint(
                condition=Q(cancel_outcome="") | Q(status="cancelled", shipped_at__isnull=False),
                name="transfer_cancel_outcome_when_shipped",
            ),
        ]

    def __str__(self) -> str:
        return f"Transfer {self.pk}"

    @property
    def ledger_reference(self) -> str:
        return f"transfer:{self.pk}"


class TransferLine(models.Model):
    transfer = models.ForeignKey(Transfer, on_delete=models.CASCADE, related_name="lines")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="transfer_lines")
    quantity = models.BigIntegerField()
    received = models.BigIntegerField(default=0, help_text="Units booked into the destination so far.")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["transfer", "item"], name="transfer_line_unique_item"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="transfer_line_quantity_positive"),
            models.CheckConstraint(
                condition=Q(received__gte=0, received__lte=models.F("quantity")), name="transfer_line_received_in_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.item} x {self.quantity}"

    @property
    def in_transit(self) -> int:
        """Units that left the source and have not arrived (while the transfer is in transit)."""
        return self.quantity - self.received


class StockCount(models.Model):
    """A count sheet for one location: expected on-hand snapshotted per item, counted quantities, then applied.

    The count is taken as of its snapshot (``created_at``): applying books ``counted - expected``
    per line as a ``count`` movement, a delta, so that whatever moved between the snapshot and the
    apply (sales, receipts, reservations) is kept rather than undone.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "Counting"
        COUNTED = "counted", "Counted (to apply)"
        APPLIED = "applied", "Applied"
        CANCELLED = "cancelled", "Cancelled"

    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="stock_counts")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    blind = models.BooleanField(
        default=False, help_text="Blind count: the sheet hides expected quantities until the count is submitted."
    )
    scope = models.CharField(max_length=200, blank=True, default="", help_text="Which items the sheet lists.")
    note = models.CharField(max_length=500, blank=True, default="")
    created_by = models.CharField(max_length=120, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, help_text="When the expected quantities were taken.")
    counted_by = models.CharField(max_length=120, blank=True, default="")
    counted_at = models.DateTimeField(null=True, blank=True)
    applied_by = models.CharField(max_length=120, blank=True, default="")
    applied_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.CharField(max_length=120, blank=True, default="")
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "stock count"
        indexes = [models.Index(fields=["location", "status"], name="stock_count_location_status")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="applied", applied_at__isnull=False)
                | (~Q(status="applied") & Q(applied_at__isnull=True)),
                name="stock_count_applied_when",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["draft", "cancelled"]) | Q(counted_at__isnull=False),
                name="stock_count_counted_when",
            ),
            models.CheckConstraint(
                condition=Q(status="cancelled", cancelled_at__isnull=False)
                | (~Q(status="cancelled") & Q(cancelled_at__isnull=True)),
                name="stock_count_cancelled_when",
            ),
        ]

    def __str__(self) -> str:
        return f"Count {self.pk}"

    @property
    def ledger_reference(self) -> str:
        # Not "count:": the API's count movements carry "count:<idempotency key>".
        return f"stock_count:{self.pk}"

    @property
    def hides_expected(self) -> bool:
        """A blind count shows expected quantities only once it is submitted."""
        return self.blind and self.status == self.Status.DRAFT


class StockCountLine(models.Model):
    """One item on a count sheet: on hand and reserved at the snapshot, what was counted, what was booked."""

    # No index of its own: stock_count_line_unique_item leads with it.
    count = models.ForeignKey(StockCount, on_delete=models.CASCADE, related_name="lines", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="count_lines")
    expected = models.BigIntegerField(help_text="On hand at the snapshot.")
    reserved = models.BigIntegerField(default=0, help_text="Reserved for orders at the snapshot.")
    counted = models.BigIntegerField(null=True, blank=True, help_text="Units found; empty while not counted.")
    # Booked when the count was applied: counted - expected (0 when nothing differed).
    difference = models.BigIntegerField(null=True, blank=True)
    # Staff confirmed booking a count that leaves on hand under what is reserved.
    short_confirmed = models.BooleanField(default=False)
    movement = models.OneToOneField(
        Movement, null=True, blank=True, on_delete=models.PROTECT, related_name="count_line"
    )

    class Meta:
        ordering = ["id"]  # created in SKU order
        constraints = [
            models.UniqueConstraint(fields=["count", "item"], name="stock_count_line_unique_item"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="stock_count_line_reserved_not_negative"),
            models.CheckConstraint(
                condition=Q(counted__isnull=True) | Q(counted__gte=0), name="stock_count_line_counted_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(difference__isnull=True) | Q(counted__isnull=False),
                name="stock_count_line_booked_what_was_counted",
            ),
            models.CheckConstraint(
                condition=Q(movement__isnull=True) | (Q(difference__isnull=False) & ~Q(difference=0)),
                name="stock_count_line_movement_books_a_difference",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.item.sku} on {self.count}"
