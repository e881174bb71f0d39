"""Recompute the forecast safety stock of every slot now, with progress, apply the current slot, move reorder points."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.catalog.models import Item
from apps.forecasting.services.overrides import safety_current_slot_apply
from apps.forecasting.services.recompute import forecast_recompute
from apps.forecasting.services.reorder import reorder_points_recompute


class Command(BaseCommand):
    help = (
        "Recompute forecast safety stock per item, location and hour-of-week slot from the ledger, apply the "
        "current slot, and move the reorder points that follow the forecast."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sku", action="append", default=[], help="Only this item (repeatable).")
        parser.add_argument("--no-apply", action="store_true", help="Store forecasts without changing safety stock.")

    def handle(self, *args: Any, **options: Any) -> None:
        item_ids = None
        if options["sku"]:
            found = dict(Item.objects.filter(sku__in=options["sku"]).values_list("sku", "id"))
            missing = sorted(set(options["sku"]) - set(found))
            if missing:
                raise CommandError(f"Unknown SKU: {', '.join(missing)}")
            item_ids = sorted(found.values())
        started = time.monotonic()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done in (0, total) or now - last[0] >= 1:
                last[0] = now
                pct = 100 * done / total if total else 100
                self.stdout.write(f"  {done}/{total} item-locations ({pct:.0f}%)")

        self.stdout.write("Recomputing safety stock forecasts...")
        result = forecast_recompute(item_ids=item_ids, progress=progress)
        methods = ", ".join(f"{name}: {count}" for name, count in sorted(result.methods.items())) or "none"
        self.stdout.write(
            f"{result.forecasts} slot forecasts for {result.pairs} item-locations in "
            f"{time.monotonic() - started:.1f} s ({methods})."
        )
        reorder = reorder_points_recompute(item_ids=item_ids)
        self.stdout.write(
            f"Reorder points: {reorder.rules} rules follow the forecast ({reorder.created} new, "
            f"{reorder.changed} changed); rules set by hand kept."
        )
        if options["no_apply"]:
            return
        applied = safety_current_slot_apply()
        self.stdout.write(
            self.style.SUCCESS(
                f"Applied the current slot: {applied.changed} of {applied.levels} levels changed, "
                f"{applied.expired} overrides expired."
            )
        )
