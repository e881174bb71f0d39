"""An opened incident is mailed from a task (the signal is sent after the incident committed);
the roles are applied again after every migrate."""

from __future__ import annotations

from typing import Any

import structlog
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder
from django.dispatch import receiver
from kombu.exceptions import OperationalError

from apps.catalog.signals import incident_opened

log = structlog.get_logger("stockroom.notifications")


@receiver(incident_opened, dispatch_uid="staff.incident_opened")
def on_incident_opened(sender: Any, *, incident_id: int, **_: Any) -> None:
    from apps.staff.tasks import incident_notify_task

    try:
        incident_notify_task.delay(incident_id)
    except (OperationalError, OSError) as err:
        # The incident stands and shows in the admin and the dashboard; only its mail is lost.
        log.warning("incident_mail_not_queued", incident=incident_id, error=str(err))


# The migration that made the groups; before it (or after it was reversed) the roles stay away.
ROLES_MIGRATION = ("staff", "0002_roles")


def roles_after_migrate(sender: Any, *, using: str = "default", **_: Any) -> None:
    """Apply the roles again once this app's permissions exist, so that new models' permissions join them."""
    from apps.staff.roles import roles_apply

    if ROLES_MIGRATION in MigrationRecorder(connections[using]).applied_migrations():
        roles_apply()
