"""An opened incident is mailed from a task; the signal is sent after the incident committed."""

from __future__ import annotations

from typing import Any

import structlog
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
