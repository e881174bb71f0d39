"""Suppliers: created with their own location and polling schedule, changed, retired."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from apps.catalog.models import Location
from apps.catalog.services.incidents import incident_secret_unreadable
from apps.core.errors import Conflict, CredentialsRequired
from apps.core.redaction import secrets_remember
from apps.core.secrets import SecretsUnreadable, secret_value
from apps.suppliers.locks import poll_interval_lock
from apps.suppliers.models import Supplier
from apps.suppliers.services.mappings import supplier_stock_apply

log = structlog.get_logger("stockroom.suppliers")

POLLED_CONNECTORS = (Supplier.Connector.REST, Supplier.Connector.SFTP, Supplier.Connector.FOLDER)
POLL_TASK = "suppliers.supplier_poll"
# Changing these changes what every item is worth, so the whole location is recomputed.
_DISTRUST_FIELDS = ("trust_factor", "cap")
# A supplier location sells nothing until its first good feed sets a real validity.
NEVER_VALID = datetime(2000, 1, 1, tzinfo=UTC)


def supplier_secret(supplier: Supplier) -> str:
    """The supplier's secret in plain text ("" when none), for signing checks and authenticating polls.

    One no configured key opens raises SecretsUnreadable (a message naming no secret), after
    opening the supplier's one incident about it and logging why.
    """
    try:
        secret = secret_value(supplier.secret)
    except SecretsUnreadable as err:
        log.error("supplier_secret_unreadable", supplier=supplier.code, reason=str(err))
        incident_secret_unreadable(owner=f"supplier {supplier.code}")
        raise
    secrets_remember([secret])  # the log formatter redacts it from any line
    return secret


class SupplierCodeTaken(Conflict):
    code = "supplier_code_taken"
    default_detail = "A location with this code already exists and is not this supplier's."


def poll_task_name(supplier: Supplier) -> str:
    return f"supplier-poll:{supplier.code}"


def supplier_schedule_sync(*, supplier: Supplier) -> PeriodicTask | None:
    """One periodic task per polled supplier, at its own interval; disabled when it should not poll."""
    name = poll_task_name(supplier)
    wanted = supplier.is_active and supplier.connector in POLLED_CONNECTORS
    task = PeriodicTask.objects.filter(name=name).first()
    if task is None and not wanted:
        return None
    with transaction.atomic():
        poll_interval_lock(every_s=supplier.poll_interval_s)
        key = {"every": supplier.poll_interval_s, "period": IntervalSchedule.SECONDS}
        # The oldest, should an earlier race have left two of the same.
        same = IntervalSchedule.objects.filter(**key).order_by("pk")
        interval = same.first() or IntervalSchedule.objects.create(**key)
    if task is None:
        task = PeriodicTask(name=name)
    task.task = POLL_TASK
    task.interval = interval
    task.args = json.dumps([supplier.pk])
    task.enabled = wanted
    task.description = f"Poll the {supplier.get_connector_display()} feed of {supplier.name}"
    # A poll that could not start within its own interval is skipped, not queued up behind others.
    task.expire_seconds = supplier.poll_interval_s
    task.save()
    return task


@transaction.atomic
def supplier_create(*, code: str, name: str, connector: str, actor: str, **fields: Any) -> Supplier:
    """A supplier and its location of kind supplier with the same code (stock sells nowhere until a good feed)."""
    location = Location.objects.filter(code=code).first()
    if location is not None:
        if location.kind != Location.Kind.SUPPLIER or hasattr(location, "supplier"):
            raise SupplierCodeTaken(field="code")
        location.name = name
        location.is_active = True
        location.stock_valid_until = NEVER_VALID
        location.save(update_fields=["name", "is_active", "stock_valid_until"])
    else:
        # Until the first good feed arrives nothing here is for sale.
        location = Location.objects.create(
            code=code, name=name, kind=Location.Kind.SUPPLIER, allow_negative=False, stock_valid_until=NEVER_VALID
        )
    supplier = Supplier(code=code, name=name, connector=connector, location=location, **fields)
    supplier.full_clean(exclude=["location"])
    supplier.save()
    supplier_schedule_sync(supplier=supplier)
    log.info("supplier_created", supplier=code, connector=connector, actor=actor)
    return supplier


# The settings that decide where the supplier's secret is sent (REST feed, order check, SFTP server).
SECRET_DESTINATIONS = ("url", "order_check_url", "host", "port")


def supplier_rebind_check(*, supplier: Supplier, settings: Mapping[str, Any] | None, secret_given: bool) -> None:
    """Refuse (CredentialsRequired) new settings that send the stored secret to another address, unless the
    secret is given again with them."""
    if not supplier.secret or secret_given or settings is None:
        return
    stored = supplier.settings or {}
    for key in SECRET_DESTINATIONS:
        if str(stored.get(key) or "").strip().rstrip("/") != str(settings.get(key) or "").strip().rstrip("/"):
            raise CredentialsRequired(
                f"Changing settings.{key} would send the supplier's stored secret to another address: give the "
                "secret again in the same request.",
                errors={f"settings.{key}": ["Give the secret again with this change."]},
                field=f"settings.{key}",
            )


@transaction.atomic
def supplier_update(*, supplier: Supplier, actor: str, **fields: Any) -> Supplier:
    if "settings" in fields:
        supplier_rebind_check(supplier=supplier, settings=fields["settings"], secret_given="secret" in fields)
    before = {f: getattr(supplier, f) for f in _DISTRUST_FIELDS}
    for field, value in fields.items():
        if field == "code" and value != supplier.code:
            raise Conflict("A supplier's code cannot change: it is its location's code.", field="code")
        setattr(supplier, field, value)
    supplier.full_clean(exclude=["location"])
    supplier.save()
    if supplier.location.name != supplier.name:
        supplier.location.name = supplier.name
        supplier.location.save(update_fields=["name"])
    supplier_schedule_sync(supplier=supplier)
    if any(before[f] != getattr(supplier, f) for f in _DISTRUST_FIELDS):
        supplier_stock_apply(supplier=supplier, item_ids=None, reason="supplier_distrust_changed", actor=actor)
    if "max_age_minutes" in fields and supplier.last_success_at is not None:
        valid = supplier.last_success_at + timedelta(minutes=supplier.max_age_minutes)
        Location.objects.filter(pk=supplier.location_id).update(stock_valid_until=valid)
    log.info("supplier_updated", supplier=supplier.code, fields=sorted(fields), actor=actor)
    return supplier


@transaction.atomic
def supplier_delete(*, supplier: Supplier, actor: str) -> None:
    """Retire a supplier: its polling stops and its location stops selling; the ledger stays."""
    location = supplier.location
    PeriodicTask.objects.filter(name=poll_task_name(supplier)).delete()
    supplier.products.filter(item__isnull=False).update(status="vanished", status_reason=f"supplier retired by {actor}")
    supplier_stock_apply(supplier=supplier, item_ids=None, reason="supplier_retired", actor=actor)
    supplier.delete()
    location.is_active = False
    location.save(update_fields=["is_active"])
    log.info("supplier_deleted", supplier=location.code, actor=actor)
