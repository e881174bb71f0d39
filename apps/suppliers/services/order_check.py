"""Drop-ship order check: ask the supplier whether it can ship what an order reserved at its location.

The supplier answers ``{"accepted": true}`` (2xx) or refuses (``{"accepted": false, "reason": ...}``
or HTTP 409/422); a refusal releases the reservation there, flags the order and opens an incident.
Timeouts and 5xx are ``OrderCheckUnavailable``: the task retries with backoff, then flags the order.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import requests
import structlog
from django.db.models import Sum

from apps.catalog.models import Incident, Movement
from apps.catalog.services.incidents import incident_open
from apps.core.outbound import OutboundRefused, outbound_session, status_text
from apps.core.redaction import redact
from apps.core.secrets import SecretsUnreadable
from apps.suppliers.models import Supplier, SupplierProduct
from apps.suppliers.services.suppliers import supplier_secret

log = structlog.get_logger("stockroom.suppliers.order_check")


class OrderCheckUnavailable(Exception):
    """No usable answer yet (timeout, connection error, 5xx, 429): worth retrying."""


def _lines(order_id: int, supplier: Supplier) -> list[dict[str, Any]]:
    reserved = (
        Movement.objects.filter(reference=f"order:{order_id}", location_id=supplier.location_id)
        .values("item_id", "item__sku")
        .annotate(quantity=Sum("reserved_delta"))
        .order_by("item__sku")
    )
    skus: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for item_id, sku, units in SupplierProduct.objects.filter(
        supplier=supplier, status=SupplierProduct.Status.ACTIVE
    ).values_list("item_id", "supplier_sku", "units_per_pack"):
        skus[item_id].append((sku, units))
    lines = []
    for row in reserved:
        if row["quantity"] <= 0:
            continue
        mapped = skus.get(row["item_id"], [])
        lines.append(
            {
                "item": row["item__sku"],
                "quantity": row["quantity"],
                "supplier_sku": mapped[0][0] if mapped else None,
                "units_per_pack": mapped[0][1] if mapped else None,
            }
        )
    return lines


def order_check_request(*, order_id: int, location_id: int) -> str:
    """Call the supplier; returns "accepted", "refused" or "skipped" (no check configured or nothing held)."""
    supplier = Supplier.objects.filter(location_id=location_id).first()
    if supplier is None:
        return "skipped"
    url = (supplier.settings or {}).get("order_check_url")
    if not url:
        return "skipped"
    lines = _lines(order_id, supplier)
    if not lines:
        return "skipped"
    timeout = float((supplier.settings or {}).get("order_check_timeout_s", 5))
    headers = {"Content-Type": "application/json"}
    try:
        secret = supplier_secret(supplier)
    except SecretsUnreadable as err:
        raise OrderCheckUnavailable(str(err)) from err
    if secret:
        scheme = (supplier.settings or {}).get("auth_scheme", "Bearer")
        name = (supplier.settings or {}).get("auth_header", "Authorization")
        headers[name] = f"{scheme} {secret}" if scheme else secret
    payload = {"order_id": order_id, "supplier": supplier.code, "lines": lines}
    try:
        # Redirects are not followed: the check's URL is where the secret may go, and nowhere else.
        with outbound_session() as session:
            response = session.post(url, json=payload, headers=headers, timeout=(3, timeout))
    except OutboundRefused as err:
        raise OrderCheckUnavailable(str(err)) from err
    except requests.RequestException as err:
        raise OrderCheckUnavailable(f"{type(err).__name__}") from err
    if response.status_code == 429 or response.status_code >= 500:
        raise OrderCheckUnavailable(status_text(response.status_code))
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    accepted = 200 <= response.status_code < 300 and body.get("accepted", True) is not False
    if accepted:
        log.info("order_check_accepted", order=order_id, supplier=supplier.code)
        return "accepted"
    # The supplier's own reason is kept (staff read it on the order), never with the secret in it.
    said = body.get("reason") or body.get("detail") or status_text(response.status_code)
    reason = redact(str(said), [supplier.secret])[:300]
    from apps.orders.services import order_supplier_refused

    order_supplier_refused(order_id=order_id, location_id=location_id, reason=f"{supplier.code} refused: {reason}")
    log.warning("order_check_refused", order=order_id, supplier=supplier.code, reason=reason)
    return "refused"


def order_check_unanswered(*, order_id: int, location_id: int, error: str) -> None:
    """The supplier never answered: keep the reservation but flag it for staff to chase."""
    supplier = Supplier.objects.filter(location_id=location_id).first()
    code = supplier.code if supplier else str(location_id)
    incident_open(
        kind=Incident.Kind.SUPPLIER_REFUSAL,
        location_id=location_id,
        reference=f"order:{order_id}",
        detail=f"Order check with {code} got no answer after retries ({error}); confirm the order by hand.",
    )
    from apps.orders.models import Order

    Order.objects.filter(pk=order_id).update(flagged=True)  # the order's own flag, as a refusal sets it
    log.warning("order_check_unanswered", order=order_id, supplier=code, error=error)
