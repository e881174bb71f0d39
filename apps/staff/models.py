"""What each staff user wants to hear about by e-mail, and which low stock was already told."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.catalog.models import Item, Location


class NotificationPreference(models.Model):
    """One staff user's e-mail settings. A user without a row gets the defaults (both on)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    incidents = models.BooleanField(default=True, help_text="An e-mail for each incident as it opens.")
    low_stock = models.BooleanField(
        default=True, help_text="An e-mail listing items whose stock fell to their safety stock or below."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "my notification settings"
        verbose_name_plural = "my notification settings"

    def __str__(self) -> str:
        return f"Notifications of {self.user.get_username()}"


class LowStockAlert(models.Model):
    """An item at a location that was reported low; it is reported again only after it recovers."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="+")
    reported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "location"], name="low_stock_alert_unique_pair")]

    def __str__(self) -> str:
        return f"{self.item.sku} low at {self.location.code}"
