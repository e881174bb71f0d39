"""Factories for suppliers and mappings, made through the services so locations and schedules exist."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from apps.catalog.models import Item
from apps.catalog.tests.factories import ItemFactory
from apps.suppliers.models import Supplier, SupplierProduct
from apps.suppliers.services.suppliers import supplier_create

_counter = iter(range(1, 10**9))


def make_supplier(
    code: str | None = None,
    *,
    connector: str = Supplier.Connector.FOLDER,
    settings: dict[str, Any] | None = None,
    trust_factor: str = "1",
    cap: int | None = None,
    max_age_minutes: int = 120,
    secret: str = "",
    **fields: Any,
) -> Supplier:
    code = code or f"sup{next(_counter)}"
    supplier = supplier_create(
        code=code,
        name=f"Supplier {code}",
        connector=connector,
        actor="test",
        settings=settings if settings is not None else {"path": "/nonexistent"},
        trust_factor=Decimal(trust_factor),
        cap=cap,
        max_age_minutes=max_age_minutes,
        secret=secret,
        **fields,
    )
    return Supplier.objects.select_related("location").get(pk=supplier.pk)


def make_mapping(
    supplier: Supplier,
    supplier_sku: str,
    item: Item | None = None,
    *,
    units_per_pack: int = 1,
    unit_factor: str = "1",
    status: str = SupplierProduct.Status.ACTIVE,
) -> SupplierProduct:
    item = item or ItemFactory(sku=f"ITEM-{supplier_sku}")
    return SupplierProduct.objects.create(
        supplier=supplier,
        supplier_sku=supplier_sku,
        item=item,
        units_per_pack=units_per_pack,
        unit_factor=Decimal(unit_factor),
        status=status,
    )


def now_iso(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + delta).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def csv_feed(rows: list[tuple[Any, ...]], *, header: str = "supplier_sku,quantity,updated_at", sep: str = ",") -> bytes:
    lines = [header.replace(",", sep)]
    lines += [sep.join(str(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()
