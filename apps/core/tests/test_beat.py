"""Beat on two hosts: one sends the schedule, the standby sends nothing; kill the leader and the standby
takes over within seconds, starting from the runs the leader recorded (no job sent twice for one due time)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from apps.core.testing import database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]


class Beat:
    def __init__(self, name: str) -> None:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "inventory_site.settings.test",
            "DATABASE_URL": database_url(connection.settings_dict),
            "REDIS_URL": settings.REDIS_URL,
            "LOG_LEVEL": "DEBUG",  # beat's "Sending due task" lines are housekeeping: DEBUG shows them
            "BEAT_STANDBY_POLL_S": "1",
        }
        command = [str(Path(sys.executable).with_name("celery")), "-A", "inventory_site", "beat", "-l", "DEBUG",
                   "--pidfile", ""]  # fmt: skip
        self.name = name
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line))

    def sent(self, task: str, after: float = 0.0) -> list[float]:
        return [at for at, line in self.lines if "Sending due task" in line and f"({task})" in line and at >= after]

    def leads(self) -> bool:
        return any("beat_leader" in line for _, line in self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def wait_for(condition, timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.2)
    return time.monotonic() - started


def test_a_standby_beat_takes_over_from_a_killed_leader_without_sending_twice():
    task = "orders.holds_release_expired"  # every 15 s
    first = Beat("first")
    second = None
    try:
        wait_for(first.leads, 30)
        wait_for(lambda: first.sent(task), 30)
        second = Beat("second")
        time.sleep(20)  # more than a period: the standby sends nothing while the leader lives
        assert not second.leads() and not second.sent(task), "".join(line for _, line in second.lines[-20:])
        assert len(first.sent(task)) >= 2
        last_sent = first.sent(task)[-1]
        first.kill()  # a crashed host: its session ends, PostgreSQL frees the lock
        killed = time.monotonic()
        took_over = wait_for(second.leads, 15)
        assert took_over < 10
        wait_for(lambda: second.sent(task), 30)
        resumed = second.sent(task)[0]
        # The standby went on from the leader's last run: the next one a period later, not at once again.
        assert resumed - last_sent >= 15 - 2, (resumed - last_sent, resumed - killed)
        assert resumed - killed < 30
    finally:
        first.kill()
        if second is not None:
            second.kill()


def test_beat_survives_its_database_sessions_ending_and_leads_again():
    """PostgreSQL restarted (every session ended): beat neither exits nor stops sending; it leads again."""
    import psycopg

    from apps.core.testing import connect_kwargs

    task = "orders.holds_release_expired"  # every 15 s
    beat = Beat("only")
    try:
        wait_for(beat.leads, 30)
        wait_for(lambda: beat.sent(task), 30)
        connection.ensure_connection()
        own = connection.connection.info.backend_pid
        with psycopg.connect(**connect_kwargs(connection.settings_dict), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s",
                [own],
            )  # what a restart does to the sessions of every client (this test's own are spared)
        ended = time.monotonic()
        wait_for(lambda: any("beat_database_error" in line or "beat_leadership_lost" in line
                             for at, line in beat.lines if at >= ended), 30)  # fmt: skip
        wait_for(lambda: beat.sent(task, after=ended), 40)
        assert beat.process.poll() is None, "".join(line for _, line in beat.lines[-30:])
    finally:
        beat.kill()
