"""Incidents: opened by any app through here, so that listeners hear of them after commit."""

from __future__ import annotations

from functools import partial

import structlog
from django.db import connection, transaction
from django.utils import timezone

from apps.catalog import metrics
from apps.catalog.models import Incident
from apps.catalog.signals import incident_cause_changed, incident_opened

log = structlog.get_logger("stockroom.incidents")


def incident_open(
    *,
    kind: str,
    item_id: int | None = None,
    location_id: int | None = None,
    shortfall: int = 0,
    reference: str = "",
    detail: str = "",
) -> Incident:
    incident = Incident.objects.create(
        kind=kind, item_id=item_id, location_id=location_id, shortfall=shortfall, reference=reference, detail=detail
    )
    log.warning(
        "incident_opened", incident=incident.pk, kind=kind, item=item_id, location=location_id, shortfall=shortfall
    )
    transaction.on_commit(partial(metrics.incident_committed, kind))
    transaction.on_commit(partial(incident_opened.send, sender=Incident, incident_id=incident.pk))
    return incident


def incident_open_once(*, kind: str, reference: str, detail: str = "") -> Incident | None:
    """Open an incident unless one of this kind and reference is still open (then None).

    For causes met on every attempt (each push of a channel whose secret is unreadable): one
    incident until staff resolve it, not one per attempt.
    """
    with transaction.atomic():
        with connection.cursor() as cursor:  # concurrent attempts open one incident between them
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"incident:{kind}:{reference}"])
        if Incident.objects.filter(kind=kind, reference=reference, status=Incident.Status.OPEN).exists():
            return None
        return incident_open(kind=kind, reference=reference, detail=detail)


def incident_secret_unreadable(*, owner: str) -> Incident | None:
    """A channel's or supplier's stored secret no configured key opens (``owner``: "channel web")."""
    return incident_open_once(
        kind=Incident.Kind.UNREADABLE_SECRET,
        reference=f"secret:{owner}"[:120],
        detail=f"The stored secret of {owner} cannot be decrypted with STOCKROOM_SECRETS_KEY (the key changed "
        "without `manage.py rotate_secrets`). Its pushes, polls and webhooks fail until the secret is entered "
        "again or the old key is added back to STOCKROOM_SECRETS_KEY.",
    )


@transaction.atomic
def incident_resolve(*, incident: Incident, resolved_by: str, note: str = "") -> Incident:
    updated = Incident.objects.filter(pk=incident.pk, status=Incident.Status.OPEN).update(
        status=Incident.Status.RESOLVED, resolved_at=timezone.now(), resolved_by=resolved_by, resolution_note=note
    )
    incident.refresh_from_db()
    if updated:
        log.info("incident_resolved", incident=incident.pk, by=resolved_by)
        if incident.item_id is not None:  # a channel told 0 for it gets the truth again
            incident_cause_changed.send(
                sender=Incident, item_ids=[incident.item_id], reason=f"resolved:{incident.kind}"[:60]
            )
    return incident
