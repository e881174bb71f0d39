"""Suppliers, their SKU mappings, and the record of every feed run and quarantined row."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from apps.catalog.models import Item, Location, Receipt
from apps.core.secrets import UNREADABLE_TEXT, EncryptedTextField, UnreadableSecret


class Supplier(models.Model):
    """A drop-ship supplier whose stock we sell from its own virtual location, distrusted."""

    class Connector(models.TextChoices):
        REST = "rest", "REST polling"
        WEBHOOK = "webhook", "Webhook push"
        SFTP = "sftp", "File over SFTP"
        FOLDER = "folder", "Drop folder"

    class Breaker(models.TextChoices):
        CLOSED = "closed", "Closed (polling)"
        OPEN = "open", "Open (not polling)"
        HALF_OPEN = "half_open", "Half-open (one trial poll)"

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    connector = models.CharField(max_length=10, choices=Connector.choices)
    settings = models.JSONField(default=dict, blank=True, help_text="URL, path, format, paging, auth header name...")
    # Signs webhooks / authenticates polls. Encrypted at rest; never shown in full: admin and API
    # mask it. Used through ``apps.core.secrets.secret_value`` (an unreadable one is refused there).
    secret = EncryptedTextField(blank=True, default="")
    trust_factor = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("1.000"),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(1))],
    )
    cap = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Most base units of one item we believe this supplier has."
    )
    max_age_minutes = models.PositiveIntegerField(default=120, validators=[MinValueValidator(1)])
    poll_interval_s = models.PositiveIntegerField(default=900, validators=[MinValueValidator(10)])
    priority = models.PositiveSmallIntegerField(default=100)
    location = models.OneToOneField(Location, on_delete=models.PROTECT, related_name="supplier")
    is_active = models.BooleanField(default=True)
    # Health.
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    failures_in_row = models.PositiveIntegerField(default=0)
    breaker_state = models.CharField(max_length=10, choices=Breaker.choices, default=Breaker.CLOSED)
    breaker_opened_at = models.DateTimeField(null=True, blank=True)
    # Recorded by the staleness job so that channels are told once when stock goes to 0.
    is_stale = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["priority", "code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(trust_factor__gte=0) & Q(trust_factor__lte=1), name="supplier_trust_factor_0_1"
            ),
            models.CheckConstraint(condition=Q(max_age_minutes__gte=1), name="supplier_max_age_positive"),
            models.CheckConstraint(condition=Q(poll_interval_s__gte=10), name="supplier_poll_interval_min"),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    @property
    def secret_masked(self) -> str:
        if not self.secret:
            return ""
        if isinstance(self.secret, UnreadableSecret):
            return UNREADABLE_TEXT
        return "•" * 8 + (self.secret[-2:] if len(self.secret) >= 12 else "")


class SupplierProduct(models.Model):
    """One supplier SKU mapped to one of our items, with how to convert its quantities."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPECT = "suspect", "Suspect (listing changed)"
        UNMAPPED = "unmapped", "Unmapped (unknown SKU seen in a feed)"
        VANISHED = "vanished", "Vanished from the feed"

    supplier = models.ForeignKey(Supplier, on_delete=models.CASCADE, related_name="products")
    supplier_sku = models.CharField(max_length=100)
    item = models.ForeignKey(Item, null=True, blank=True, on_delete=models.PROTECT, related_name="supplier_products")
    units_per_pack = models.PositiveIntegerField(default=1, help_text="A carton of 12 is 12.")
    unit_factor = models.DecimalField(
        max_digits=12, decimal_places=6, default=Decimal(1), help_text="Base units per supplier unit: kg -> g is 1000."
    )
    lead_time_days = models.PositiveSmallIntegerField(default=0)
    moq = models.PositiveIntegerField(default=1, help_text="Minimum order quantity, in supplier packs.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    # Snapshot of the last accepted feed row, for delta detection.
    last_reported_qty = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True, default="", help_text="Hash of title/spec/price/pack.")
    confirmed_fingerprint = models.CharField(max_length=64, blank=True, default="")
    status_reason = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["supplier", "supplier_sku"]
        constraints = [
            models.UniqueConstraint(fields=["supplier", "supplier_sku"], name="supplier_product_unique_sku"),
            models.CheckConstraint(
                condition=Q(item__isnull=False) | Q(status="unmapped"), name="supplier_product_item_unless_unmapped"
            ),
            models.CheckConstraint(condition=Q(units_per_pack__gte=1), name="supplier_product_units_positive"),
            models.CheckConstraint(condition=Q(unit_factor__gt=0), name="supplier_product_factor_positive"),
        ]
        indexes = [models.Index(fields=["supplier", "item"], name="supplier_product_item")]

    def __str__(self) -> str:
        return f"{self.supplier.code} {self.supplier_sku} -> {self.item.sku if self.item else 'unmapped'}"


class PurchaseOrder(models.Model):
    """What the merchant orders from one supplier: its goods are announced as receipts due, one per location.

    Made from the ticked rows of the "To reorder" list (``services/purchase_orders.py``); the
    receipts carry its number as their reference, and are received on the receiving page.
    """

    supplier = models.ForeignKey(Supplier, on_delete=models.PROTECT, related_name="purchase_orders")
    receipts = models.ManyToManyField(Receipt, related_name="purchase_orders", blank=True)
    note = models.CharField(max_length=500, blank=True, default="")
    created_by = models.CharField(max_length=120, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "purchase order"

    def __str__(self) -> str:
        return self.number

    @property
    def number(self) -> str:
        return f"PO-{self.pk}"


class FeedRun(models.Model):
    """One attempt to take in a supplier feed, whatever its outcome."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        REFUSED = "refused", "Refused (mostly bad rows; nothing applied)"
        FAILED = "failed", "Failed (could not be read)"
        ABANDONED = "abandoned", "Abandoned (its worker stopped)"

    supplier = models.ForeignKey(Supplier, on_delete=models.CASCADE, related_name="feed_runs")
    source = models.CharField(max_length=500, blank=True, default="", help_text="rest, webhook, a file name...")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING, db_index=True)
    rows_read = models.PositiveIntegerField(default=0)
    rows_accepted = models.PositiveIntegerField(default=0)
    rows_changed = models.PositiveIntegerField(default=0)
    rows_quarantined = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration = models.DurationField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # Moved on while the run works; a running run whose heartbeat stops is abandoned by a beat job.
    heartbeat_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="running") | Q(rows_read=F("rows_accepted") + F("rows_quarantined")),
                name="feed_run_rows_add_up",
            ),
            models.CheckConstraint(condition=Q(rows_changed__lte=F("rows_accepted")), name="feed_run_changed_le_ok"),
        ]
        indexes = [models.Index(fields=["supplier", "-started_at"], name="feed_run_supplier_time")]

    def __str__(self) -> str:
        return f"feed run {self.pk} of {self.supplier.code}: {self.status}"


class QuarantinedRow(models.Model):
    """A feed row that was not taken, kept with its reason: never silently dropped."""

    run = models.ForeignKey(FeedRun, on_delete=models.CASCADE, related_name="quarantined")
    row_number = models.PositiveIntegerField(help_text="1-based data row in the feed (header not counted).")
    supplier_sku = models.CharField(max_length=200, blank=True, default="")
    raw = models.TextField(blank=True, default="")
    reason = models.CharField(max_length=300)

    class Meta:
        ordering = ["run", "row_number"]

    def __str__(self) -> str:
        return f"row {self.row_number}: {self.reason}"


class WebhookReceipt(models.Model):
    """Signatures already accepted, so that a replayed webhook is refused."""

    supplier = models.ForeignKey(Supplier, on_delete=models.CASCADE, related_name="webhook_receipts")
    digest = models.CharField(max_length=64)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["supplier", "digest"], name="webhook_receipt_unique")]

    def __str__(self) -> str:
        return f"{self.supplier.code} {self.digest[:12]}"
