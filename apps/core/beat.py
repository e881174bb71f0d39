"""Beat with a standby: run ``celery beat`` on two hosts; one sends the schedule, the other waits.

``LeaderScheduler`` is django-celery-beat's database scheduler behind a PostgreSQL session advisory
lock, held on a connection of its own (with the settings' keepalives and TCP user timeout). The
beat holding it sends the schedule; another one checks every ``BEAT_STANDBY_POLL_S`` whether it can
take the lock and sends nothing meanwhile. A leader that dies (or whose host is cut off) loses its
session, so PostgreSQL frees the lock: at once for a killed process, within the keepalive bounds
(about 10 s) for a host cut off. A leader checks its lock connection before every tick and stops
sending the moment it cannot (it may then be the standby's turn).

No schedule runs twice: every sent task's ``last_run_at`` is written to the database at once
(``CELERY_BEAT_SYNC_EVERY = 1``), and a standby taking over reads the schedule from the database
before its first tick, so it starts from what the previous leader last sent.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
import structlog
from django.conf import settings
from django.db import DatabaseError, connection
from django_celery_beat.schedulers import DatabaseScheduler

log = structlog.get_logger("stockroom.beat")

LOCK_KEY = "stockroom.beat.leader"


class LeaderScheduler(DatabaseScheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lock_conn: psycopg.Connection | None = None
        self._leading = False
        super().__init__(*args, **kwargs)

    def _lead(self) -> bool:
        """Whether this beat holds the leader lock now (taking it when free)."""
        try:
            if self._lock_conn is None:
                params = connection.get_connection_params()
                for name in ("cursor_factory", "context", "prepare_threshold"):
                    params.pop(name, None)
                self._lock_conn = psycopg.connect(**params, autocommit=True)
            if self._leading:
                self._lock_conn.execute("SELECT 1")  # the session, and so the lock, is still there
                return True
            row = self._lock_conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [LOCK_KEY]).fetchone()
        except psycopg.Error as err:
            if self._leading:
                log.warning("beat_leadership_lost", error=f"{type(err).__name__}: {err}"[:300])
            self._drop()
            return False
        if not (row and row[0]):
            return False
        self._leading = True
        # The previous leader's runs are in the database: start from them, not from what was read at start.
        self._schedule = self.all_as_schedule()
        self._heap: list[Any] = []
        self._heap_invalidated = True
        log.info("beat_leader", backend_pid=self._lock_conn.info.backend_pid)
        return True

    def _drop(self) -> None:
        self._leading = False
        if self._lock_conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._lock_conn.close()
            self._lock_conn = None

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            if not self._lead():
                return float(settings.BEAT_STANDBY_POLL_S)
            return float(super().tick(*args, **kwargs))
        except DatabaseError as err:
            # PostgreSQL restarted or out of reach: beat would exit and send nothing again (on every host at
            # once after a restart). Give up the lead, open fresh connections on the next tick, lead again.
            log.warning("beat_database_error", error=f"{type(err).__name__}: {err}"[:300])
            with contextlib.suppress(Exception):
                connection.close()
            self._drop()
            return float(settings.BEAT_STANDBY_POLL_S)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._drop()
