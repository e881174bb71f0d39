"""A dead worker's messages come back within a minute or two, however long a task runs.

Tasks are acknowledged late (when they end), and Redis has no acknowledgements of its own: kombu keeps
each message a worker took in an ``unacked`` hash, scored in the ``unacked_index`` sorted set by the time
it was taken, and every worker puts back on its queue the messages older than the visibility timeout
(a scan every ``BROKER_RESTORE_EVERY_S``). A timeout above the longest task (an hour: the safety-stock
recompute) left a dead worker's messages waiting that hour; a short timeout alone would hand a long task
that is still running to a second worker.

So the timeout is short (``BROKER_VISIBILITY_TIMEOUT_S``, 60 s) and each live worker renews the
messages it holds every ``BROKER_VISIBILITY_RENEW_S`` (10 s): a thread of the consumer sets their score
to now (``ZADD XX``: a message acknowledged or restored meanwhile is left alone). A worker that dies
stops renewing: its messages are restored within the timeout plus one scan after its last renewal.
A worker cut off from Redis for longer than the timeout may see a task it still runs delivered again;
tasks are idempotent (they take ids and re-read the rows), as late acknowledgement already requires.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog
from celery import bootsteps
from django.conf import settings

log = structlog.get_logger("stockroom.broker")


def held_tags(consumer: Any) -> list[str]:
    """Delivery tags of the messages this worker holds unacknowledged (taken, running or waiting)."""
    task_consumer = getattr(consumer, "task_consumer", None)
    channel = getattr(task_consumer, "channel", None)
    qos = getattr(channel, "qos", None)
    delivered = getattr(qos, "_delivered", None)
    if not delivered:
        return []
    dirty = getattr(qos, "_dirty", ())
    for _ in range(3):  # the consumer's loop may change the dict while it is copied
        try:
            return [tag for tag in list(delivered) if tag not in dirty]
        except RuntimeError:
            continue
    return []


class VisibilityRenewal(bootsteps.StartStopStep):
    """Consumer step: a thread renewing this worker's unacknowledged messages in the broker."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stopped: threading.Event | None = None

    def start(self, parent: Any) -> None:
        self._stopped = threading.Event()
        threading.Thread(target=self._run, args=(parent, self._stopped), name="visibility-renewal", daemon=True).start()

    def stop(self, parent: Any) -> None:
        if self._stopped is not None:
            self._stopped.set()

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)

    def _run(self, consumer: Any, stopped: threading.Event) -> None:
        every = float(settings.STOCKROOM["BROKER_VISIBILITY_RENEW_S"])
        # A connection of this thread's own: the consumer's belongs to its event loop.
        with consumer.app.connection_for_write() as connection:
            while not stopped.wait(every):
                try:
                    renewed = renew(connection.default_channel, held_tags(consumer))
                except Exception as err:  # Redis away: the next round tries again (restores wait for the timeout)
                    log.warning("broker_visibility_renew_failed", error=f"{type(err).__name__}: {err}"[:300])
                    connection.close()
                    continue
                if renewed:
                    log.debug("broker_visibility_renewed", messages=renewed)


def renew(channel: Any, tags: list[str]) -> int:
    """Score these messages as taken now, those still unacknowledged only; returns how many were renewed."""
    if not tags:
        return 0
    now = time.time()
    # The channel's client prefixes the key with the broker's global key prefix, as kombu's own calls do.
    return int(channel.client.zadd(channel.unacked_index_key, dict.fromkeys(tags, now), xx=True, ch=True))
