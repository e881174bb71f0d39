"""Listings as a catalog table (found by the catalog's import and export), written through channel services.

A new or changed listing queues its channel sync as any other listing change does; an
unchanged row queues nothing. Channels themselves are set up in the admin, not imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import models

from apps.catalog.catalog_io.tables import NEW, UPDATE, Kind, KindPlan, Plan, RowOutcome, register, show
from apps.catalog.models import Product
from apps.channels.models import Channel, Listing
from apps.channels.services.config import listing_update, listings_create

Progress = Callable[[int], None] | None


@register
class ListingKind(Kind):
    name = "listings"
    order = 40
    model = Listing
    key = ("channel", "channel_sku")
    columns = (
        "channel", "channel_sku", "product", "coefficient", "buffer", "max_qty", "end_when", "is_active", "external_id",
    )  # fmt: skip
    field_columns = ("channel_sku", "coefficient", "buffer", "max_qty", "end_when", "is_active", "external_id")
    required = ("channel", "channel_sku", "product")

    def existing(self, keys: Sequence[str]) -> dict[str, models.Model]:
        pairs: dict[str, list[str]] = {}
        for key in keys:
            channel, _, sku = key.partition("/")
            pairs.setdefault(channel, []).append(sku)
        found: dict[str, models.Model] = {}
        for channel, skus in pairs.items():
            listings = Listing.objects.filter(channel__code=channel, channel_sku__in=skus).select_related(
                "channel", "product"
            )
            found.update({f"{channel}/{listing.channel_sku}": listing for listing in listings})
        return found

    def current(self, record: models.Model) -> dict[str, Any]:
        assert isinstance(record, Listing)
        values = super().current(record)
        values.update(channel=record.channel.code, product=record.product.code)
        return values

    def plan(self, table: Any, plan: Plan, progress: Progress = None) -> KindPlan:
        codes = {cells.get("product", "") for _, cells in table.rows}
        plan.cache["product_codes"] = set(
            Product.objects.filter(code__in=sorted(codes)).values_list("code", flat=True)
        ) | plan.new_keys.get("products", set())
        plan.cache["channel_codes"] = set(Channel.objects.values_list("code", flat=True))
        # Platform ids already taken, per channel: a row may not give another listing's (unique per channel).
        given = sorted({cells.get("external_id", "") for _, cells in table.rows} - {""})
        plan.cache["external_ids"] = {
            (channel, external_id): sku
            for channel, external_id, sku in Listing.objects.filter(external_id__in=given).values_list(
                "channel__code", "external_id", "channel_sku"
            )
        }
        plan.cache["external_ids_in_file"] = {}
        return super().plan(table, plan, progress)

    def read_extra(self, outcome: RowOutcome, plan: Plan) -> None:
        for column, known, what in (
            ("channel", plan.cache["channel_codes"], "channel (set channels up in the admin)"),
            ("product", plan.cache["product_codes"], "product (not in the catalog nor in products)"),
        ):
            code = outcome.cells.get(column)
            if not code:
                continue  # left out: a new row is told it needs it, an existing one keeps its own
            if code not in known:
                outcome.error(column, f"unknown {what}: “{code}”")
            outcome.values[column] = code

    def check(self, outcome: RowOutcome, plan: Plan) -> None:
        coefficient = outcome.values.get("coefficient")
        if coefficient is not None and not 0 <= coefficient <= 1:
            outcome.error("coefficient", "must be between 0 and 1 (the share of the stock this listing offers)")
        external_id = outcome.values.get("external_id")
        if external_id:
            channel = outcome.values.get("channel") or outcome.key.partition("/")[0]
            sku = outcome.values.get("channel_sku") or outcome.key.partition("/")[2]
            taken_by = plan.cache["external_ids"].get((channel, external_id))
            in_file = plan.cache["external_ids_in_file"].setdefault((channel, external_id), sku)
            if taken_by is not None and taken_by != sku:
                outcome.error("external_id", f"listing “{taken_by}” of channel {channel} already has this external_id")
            elif in_file != sku:
                outcome.error("external_id", f"listing “{in_file}” of this file already has this external_id")

    def apply(self, kind_plan: KindPlan, progress: Progress = None) -> None:
        channels = {channel.code: channel for channel in Channel.objects.all()}
        codes = {
            row.values["product"] for row in kind_plan.rows if row.action in (NEW, UPDATE) and "product" in row.values
        }
        products = {product.code: product for product in Product.objects.filter(code__in=sorted(codes))}

        def fields(row: RowOutcome, columns: Iterable[str]) -> dict[str, Any]:
            resolved: dict[str, dict[str, Any]] = {"channel": channels, "product": products}
            return {c: resolved[c][row.values[c]] if c in resolved else row.values[c] for c in columns}

        new = [row for row in kind_plan.rows if row.action == NEW]
        for row, listing in zip(new, listings_create(rows=[fields(row, row.values) for row in new]), strict=True):
            row.record = listing
        if progress:
            progress(len(new))
        for row in kind_plan.rows:
            if row.action == UPDATE:
                kind_plan.writing = row
                assert isinstance(row.record, Listing)
                row.record = listing_update(listing=row.record, fields=fields(row, row.changes))
                if progress:
                    progress(1)

    def export_rows(self, queryset: models.QuerySet[Any] | None = None) -> Iterable[list[str]]:
        rows = Listing.objects.all() if queryset is None else Listing.objects.filter(pk__in=queryset.values("pk"))
        values = rows.order_by("channel__code", "channel_sku").values_list(
            "channel__code", "channel_sku", "product__code", "coefficient", "buffer", "max_qty", "end_when",
            "is_active", "external_id",
        )  # fmt: skip
        for listing in values.iterator(chunk_size=5000):
            yield [show(value) for value in listing]
