"""The naive baseline keeps its stock in a table of its own, the way the merchant used to."""

from __future__ import annotations

from django.db import models


class NaiveStock(models.Model):
    """One number per item and location, read and written without locks (on purpose)."""

    run = models.CharField(max_length=40)
    sku = models.CharField(max_length=64)
    location = models.CharField(max_length=40)
    quantity = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "sku", "location"], name="naive_stock_unique")]

    def __str__(self) -> str:
        return f"{self.run}:{self.sku}@{self.location}={self.quantity}"
