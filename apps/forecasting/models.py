"""Forecast safety stock per slot, staff overrides of it, the audit trail of every change, reorder points."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from apps.catalog.models import Item, Location

SLOTS_PER_WEEK = 168  # hour of week: Monday 00:00-00:59 is slot 0, Sunday 23:00-23:59 is slot 167


class ForecastSettings(models.Model):
    """The knobs of the forecast. One row (pk=1); ``ForecastSettings.current()`` creates it with defaults."""

    service_level = models.DecimalField(
        max_digits=5,
        decimal_places=4,
        default=Decimal("0.95"),
        validators=[MinValueValidator(Decimal("0.5")), MaxValueValidator(Decimal("0.9999"))],
        help_text="Probability that offline demand during the exposure window stays within the safety stock.",
    )
    sync_latency_seconds = models.PositiveIntegerField(
        default=60, help_text="How long a stock change takes to reach every channel."
    )
    reaction_seconds = models.PositiveIntegerField(
        default=14 * 60, help_text="How long until a channel stops selling after it was told (order import lag)."
    )
    history_weeks = models.PositiveSmallIntegerField(
        default=12, validators=[MinValueValidator(1), MaxValueValidator(104)], help_text="Weeks of ledger history."
    )
    half_life_weeks = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("4"),
        validators=[MinValueValidator(Decimal("0.25"))],
        help_text="A week this many weeks old weighs half as much as the latest week.",
    )
    min_slot_weeks = models.PositiveSmallIntegerField(
        default=4, validators=[MinValueValidator(1)], help_text="Weeks of history a slot needs before it stands alone."
    )
    cold_start_rate_per_hour = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Offline demand per hour assumed for an item with no history at all.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "forecast settings"
        verbose_name_plural = "forecast settings"
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="forecast_settings_single_row"),
            models.CheckConstraint(
                condition=Q(service_level__gte=Decimal("0.5")) & Q(service_level__lt=1),
                name="forecast_settings_service_level_range",
            ),
        ]

    def __str__(self) -> str:
        return f"service level {self.service_level}, window {self.window_seconds} s"

    @classmethod
    def current(cls) -> ForecastSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj

    @property
    def window_seconds(self) -> int:
        """The exposure window: offline sales in it can still be sold again online."""
        return self.sync_latency_seconds + self.reaction_seconds

    @property
    def window_hours(self) -> float:
        return self.window_seconds / 3600


class SafetyForecast(models.Model):
    """The forecast safety stock of one item at one location in one hour-of-week slot."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="safety_forecasts")
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="safety_forecasts")
    slot = models.PositiveSmallIntegerField(validators=[MaxValueValidator(SLOTS_PER_WEEK - 1)])
    value = models.PositiveIntegerField(help_text="Safety stock in base units, bounds applied.")
    mean_per_hour = models.FloatField(default=0.0, help_text="Weighted offline demand per hour in this slot.")
    std_per_hour = models.FloatField(default=0.0)
    # Online fulfilments do not threaten the exposure window (they were reserved first), but they
    # empty the shelf all the same: the reorder points count them, weighted as the offline mean.
    online_per_hour = models.FloatField(default=0.0, help_text="Weighted online fulfilments per hour in this slot.")
    # How the value came about: method (slot, item_rate, default), weeks of history, window, service level.
    inputs = models.JSONField(default=dict, blank=True)
    computed_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["item", "location", "slot"]
        constraints = [
            models.UniqueConstraint(fields=["item", "location", "slot"], name="forecast_unique_item_location_slot"),
            models.CheckConstraint(condition=Q(slot__gte=0) & Q(slot__lt=SLOTS_PER_WEEK), name="forecast_slot_range"),
        ]

    def __str__(self) -> str:
        return f"{self.item.sku} at {self.location.code}, slot {self.slot}: {self.value}"


class SafetyOverride(models.Model):
    """Staff's own safety stock for one item at one location, instead of the forecast, until it expires."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="safety_overrides")
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="safety_overrides")
    value = models.PositiveIntegerField()
    reason = models.CharField(max_length=300)
    valid_until = models.DateTimeField(null=True, blank=True, help_text="Empty: until staff clear it.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["item", "location"]
        constraints = [
            models.UniqueConstraint(fields=["item", "location"], name="override_unique_item_location"),
            models.CheckConstraint(condition=~Q(reason=""), name="override_reason_required"),
        ]

    def __str__(self) -> str:
        return f"{self.item.sku} at {self.location.code}: {self.value}"


class SafetyAudit(models.Model):
    """One change of safety stock that a person (or an expiry) made: who, when, old, new, why."""

    class Kind(models.TextChoices):
        OVERRIDE_SET = "override_set", "Override set"
        OVERRIDE_CLEARED = "override_cleared", "Override cleared"
        OVERRIDE_EXPIRED = "override_expired", "Override expired"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="safety_audits")
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="safety_audits")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    who = models.CharField(max_length=150, help_text="The username at the time, kept if the user goes.")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    old_safety = models.BigIntegerField(help_text="Effective safety stock before.")
    new_safety = models.BigIntegerField(help_text="Effective safety stock after.")
    old_override = models.PositiveIntegerField(null=True, blank=True)
    new_override = models.PositiveIntegerField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["item", "location", "at"], name="safety_audit_pair_time")]

    def __str__(self) -> str:
        change = f"{self.old_safety} -> {self.new_safety}"
        return f"{self.get_kind_display()} {self.item.sku} at {self.location.code}: {change}"


class ReorderRule(models.Model):
    """When to order an item for a location and how much: the reorder point and the level to order up to.

    ``forecast`` rules follow the forecast (demand per day over the lead time plus the safety
    stock) each time it is recomputed; ``manual`` rules keep the points the merchant typed.
    """

    class Source(models.TextChoices):
        FORECAST = "forecast", "From the forecast"
        MANUAL = "manual", "Set by hand"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="reorder_rules")
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="reorder_rules")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.FORECAST)
    lead_time_days = models.PositiveSmallIntegerField(
        default=7,
        validators=[MaxValueValidator(365)],
        help_text="Days from placing an order until the goods are on the shelf.",
    )
    cover_days = models.PositiveSmallIntegerField(
        default=14,
        validators=[MaxValueValidator(365)],
        help_text="Days of demand an order should last beyond the reorder point (sets the order-up-to level).",
    )
    reorder_point = models.PositiveIntegerField(
        default=0, help_text="Order when usable stock plus what is on order falls to this many units."
    )
    order_up_to = models.PositiveIntegerField(
        default=0, help_text="An order brings usable stock plus what is on order up to this many units."
    )
    pack_size = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1)], help_text="Orders are whole packs of this many units."
    )
    min_order = models.PositiveIntegerField(default=0, help_text="The smallest order the supplier accepts, in units.")
    # What the last forecast said (shown beside the points; a manual rule keeps its own points).
    demand_per_day = models.FloatField(default=0.0, help_text="Forecast demand per day, offline and online.")
    safety = models.PositiveIntegerField(default=0, help_text="Safety stock counted in the reorder point.")
    computed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["item", "location"]
        verbose_name = "reorder rule"
        constraints = [
            models.UniqueConstraint(fields=["item", "location"], name="reorder_unique_item_location"),
            models.CheckConstraint(condition=Q(source__in=["forecast", "manual"]), name="reorder_source_known"),
            models.CheckConstraint(condition=Q(pack_size__gte=1), name="reorder_pack_size_positive"),
            models.CheckConstraint(
                condition=Q(order_up_to__gte=models.F("reorder_point")), name="reorder_order_up_to_not_below_point"
            ),
            models.CheckConstraint(
                condition=Q(lead_time_days__lte=365) & Q(cover_days__lte=365), name="reorder_days_within_a_year"
            ),
            models.CheckConstraint(condition=Q(demand_per_day__gte=0), name="reorder_demand_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.item.sku} at {self.location.code}: reorder at {self.reorder_point}"


class ReorderSuggestion(ReorderRule):
    """The "To reorder" list: rules whose usable stock plus what is on order is at or below the reorder point."""

    class Meta:
        proxy = True
        verbose_name = "to reorder"
        verbose_name_plural = "to reorder"
