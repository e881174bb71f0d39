"""Supplier SKU mappings: what supplier stock is worth in our items, and when to stop trusting a mapping.

The supplier location's on_hand of an item is, over the item's *active* mappings,
``sum(floor(last_reported_qty * units_per_pack * unit_factor * trust_factor))`` capped by
the supplier's cap. Suspect, vanished and unmapped mappings count for nothing until staff
confirm them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import structlog
from django.db import connection, transaction
from django.utils import timezone

from apps.catalog.models import Incident
from apps.catalog.services.incidents import incident_open
from apps.catalog.stock.bulk import supplier_levels_set
from apps.suppliers.models import Supplier, SupplierProduct

log = structlog.get_logger("stockroom.suppliers.mappings")

DEFAULT_VANISH_AFTER_HOURS = 24

_TARGETS_SQL = """
SELECT sp.item_id,
       COALESCE(SUM(FLOOR(sp.last_reported_qty * sp.units_per_pack * sp.unit_factor * %(trust)s))
                FILTER (WHERE sp.status = 'active' AND sp.last_reported_qty IS NOT NULL), 0)::bigint
  FROM suppliers_supplierproduct sp
 WHERE sp.supplier_id = %(supplier)s AND sp.item_id IS NOT NULL {items}
 GROUP BY sp.item_id
"""


def supplier_targets(*, supplier: Supplier, item_ids: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """(item_id, on_hand the supplier location should show), distrusted and capped, for these items.

    Items listed without any mapping left get 0, so a removed mapping takes its stock away.
    """
    params: dict[str, Any] = {"supplier": supplier.pk, "trust": supplier.trust_factor}
    items_clause = ""
    if item_ids is not None:
        items_clause = "AND sp.item_id = ANY(%(items)s)"
        params["items"] = list(item_ids)
    with connection.cursor() as cursor:
        cursor.execute(_TARGETS_SQL.format(items=items_clause), params)
        found = dict(cursor.fetchall())
    if item_ids is not None:
        for item_id in item_ids:
            found.setdefault(item_id, 0)
    cap = supplier.cap
    return sorted((item_id, min(target, cap) if cap is not None else target) for item_id, target in found.items())


def supplier_stock_apply(*, supplier: Supplier, item_ids: Sequence[int] | None, reason: str, actor: str) -> list[int]:
    """Bring the supplier location's levels of these items (None: all mapped and stocked) to their targets."""
    with transaction.atomic():
        if item_ids is None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT item_id FROM catalog_stocklevel WHERE location_id = %s "
                    "UNION SELECT item_id FROM suppliers_supplierproduct "
                    "WHERE supplier_id = %s AND item_id IS NOT NULL",
                    [supplier.location_id, supplier.pk],
                )
                item_ids = sorted(row[0] for row in cursor.fetchall())
        if not item_ids:
            return []
        return supplier_levels_set(
            location=supplier.location,
            targets=supplier_targets(supplier=supplier, item_ids=item_ids),
            reference=f"supplier:{supplier.code}:{reason}"[:120],
            actor=actor,
            reason=reason,
        )


def mapping_fingerprints_check(*, supplier: Supplier, reason: str) -> set[int]:
    """Mark active mappings whose listing fingerprint changed since staff confirmed it as suspect.

    A first fingerprint is taken on trust (nothing to compare with). Returns the items of the
    mappings that turned suspect; the caller re-applies their stock in the same transaction.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE suppliers_supplierproduct SET confirmed_fingerprint = fingerprint "
            "WHERE supplier_id = %s AND confirmed_fingerprint = '' AND fingerprint <> '' AND status = 'active'",
            [supplier.pk],
        )
        cursor.execute(
            """
            UPDATE suppliers_supplierproduct
               SET status = 'suspect', status_reason = %(why)s, updated_at = now()
             WHERE supplier_id = %(supplier)s AND status = 'active'
               AND confirmed_fingerprint <> '' AND fingerprint <> confirmed_fingerprint
            RETURNING item_id, supplier_sku
            """,
            {"supplier": supplier.pk, "why": reason[:300]},
        )
        rows = cursor.fetchall()
    if rows:
        incident_open(
            kind=Incident.Kind.MAPPING_SUSPECT,
            location_id=supplier.location_id,
            reference=f"supplier:{supplier.code}",
            detail=f"{len(rows)} mapping(s) of {supplier.code} off sale, listing changed: "
            + ", ".join(sorted(sku for _, sku in rows)[:20]),
        )
    return {item_id for item_id, _ in rows}


def mapping_validate(*, supplier: Supplier, actor: str = "mapping-validation") -> dict[str, int]:
    """The periodic check: listing changes and long-unseen SKUs go suspect/vanished and off sale.

    Full feeds mark vanished SKUs as they run; this also catches suppliers that push partial
    updates (webhooks) and stop mentioning a SKU for ``vanish_after_hours``.
    """
    vanish_after = timedelta(
        hours=float((supplier.settings or {}).get("vanish_after_hours", DEFAULT_VANISH_AFTER_HOURS))
    )
    cutoff = timezone.now() - vanish_after
    with transaction.atomic():
        affected = mapping_fingerprints_check(supplier=supplier, reason="listing changed (mapping validation)")
        suspects = len(affected)
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE suppliers_supplierproduct
                   SET status = 'vanished', status_reason = %(why)s, updated_at = now()
                 WHERE supplier_id = %(supplier)s AND status = 'active'
                   AND (last_seen_at IS NULL OR last_seen_at < %(cutoff)s)
                   AND (SELECT max(started_at) FROM suppliers_feedrun r
                         WHERE r.supplier_id = %(supplier)s AND r.status = 'succeeded') > %(cutoff)s
                RETURNING item_id, supplier_sku
                """,
                {"supplier": supplier.pk, "cutoff": cutoff, "why": f"not in any feed for {vanish_after}"},
            )
            vanished = cursor.fetchall()
            cursor.execute(
                "SELECT count(*) FROM suppliers_supplierproduct WHERE supplier_id = %s AND status = 'unmapped'",
                [supplier.pk],
            )
            (unmapped,) = cursor.fetchone()
        affected.update(item_id for item_id, _ in vanished)
        if vanished:
            incident_open(
                kind=Incident.Kind.MAPPING_SUSPECT,
                location_id=supplier.location_id,
                reference=f"supplier:{supplier.code}",
                detail=f"{len(vanished)} mapping(s) of {supplier.code} vanished from its feed: "
                + ", ".join(sorted(sku for _, sku in vanished)[:20]),
            )
        moved = (
            supplier_stock_apply(supplier=supplier, item_ids=sorted(affected), reason="mapping_validation", actor=actor)
            if affected
            else []
        )
    summary = {"suspect": suspects, "vanished": len(vanished), "unmapped": int(unmapped), "items_moved": len(moved)}
    log.info("mapping_validated", supplier=supplier.code, **summary)
    return summary


def mappings_confirm(*, mappings: Sequence[SupplierProduct], actor: str) -> int:
    """Staff confirm mappings: the current listing becomes the reference and the stock sells again."""
    confirmed = 0
    by_supplier: dict[int, list[SupplierProduct]] = {}
    for mapping in mappings:
        if mapping.item_id is None:
            continue  # an unmapped SKU needs an item first
        by_supplier.setdefault(mapping.supplier_id, []).append(mapping)
    for supplier_id, group in by_supplier.items():
        supplier = Supplier.objects.select_related("location").get(pk=supplier_id)
        with transaction.atomic():
            ids = [m.pk for m in group]
            with connection.cursor() as cursor:
                cursor.execute(
                    """
                    UPDATE suppliers_supplierproduct
                       SET status = 'active', confirmed_fingerprint = fingerprint, status_reason = %(why)s,
                           updated_at = now()
                     WHERE id = ANY(%(ids)s) AND item_id IS NOT NULL
                    RETURNING item_id
                    """,
                    {"ids": ids, "why": f"confirmed by {actor}"[:300]},
                )
                items = sorted({row[0] for row in cursor.fetchall()})
            confirmed += len(ids)
            supplier_stock_apply(supplier=supplier, item_ids=items, reason="mapping_confirmed", actor=actor)
        log.info("mappings_confirmed", supplier=supplier.code, count=len(group), actor=actor)
    return confirmed


@transaction.atomic
def supplier_product_save(
    *, mapping: SupplierProduct | None, supplier: Supplier, data: dict[str, Any], actor: str
) -> SupplierProduct:
    """Create or change a mapping through the API; stock of the old and new item follows at once."""
    old_item = mapping.item_id if mapping is not None else None
    old_status = mapping.status if mapping is not None else None
    if mapping is None:
        mapping = SupplierProduct(supplier=supplier)
    for field, value in data.items():
        setattr(mapping, field, value)
    if mapping.item_id is None:
        mapping.status = SupplierProduct.Status.UNMAPPED
    elif mapping.status == SupplierProduct.Status.UNMAPPED:
        mapping.status = SupplierProduct.Status.ACTIVE
    if mapping.status == SupplierProduct.Status.ACTIVE and old_status != SupplierProduct.Status.ACTIVE:
        mapping.confirmed_fingerprint = mapping.fingerprint
    mapping.full_clean(exclude=["supplier", "item"])
    mapping.save()
    items = sorted({i for i in (old_item, mapping.item_id) if i is not None})
    if items:
        supplier_stock_apply(supplier=supplier, item_ids=items, reason="mapping_changed", actor=actor)
    return mapping


@transaction.atomic
def supplier_product_delete(*, mapping: SupplierProduct, actor: str) -> None:
    supplier, item_id = mapping.supplier, mapping.item_id
    mapping.delete()
    if item_id is not None:
        supplier_stock_apply(supplier=supplier, item_ids=[item_id], reason="mapping_deleted", actor=actor)
