"""Helpers for tests that start other processes (workers, servers) or threads, and post admin forms."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from django.db import connections


def connect_kwargs(settings_dict: dict[str, Any]) -> dict[str, Any]:
    """psycopg.connect() arguments for this connection's database, TCP or unix socket."""
    options = settings_dict.get("OPTIONS") or {}
    return {
        "host": settings_dict.get("HOST") or options.get("host") or "127.0.0.1",
        "port": settings_dict.get("PORT") or options.get("port") or 5432,
        "user": settings_dict.get("USER") or "postgres",
        "password": settings_dict.get("PASSWORD") or None,
        "dbname": settings_dict["NAME"],
    }


def database_url(settings_dict: dict[str, Any], **params: str) -> str:
    """A URL for this connection's database, TCP or a unix-socket directory (the embedded default)."""
    user = quote(settings_dict.get("USER") or "")
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{quote(password)}" if password else user
    options = settings_dict.get("OPTIONS") or {}
    host = str(settings_dict.get("HOST") or options.get("host") or "127.0.0.1")
    port = str(settings_dict.get("PORT") or options.get("port") or 5432)
    name = quote(settings_dict["NAME"])
    if host.startswith("/"):
        query = urlencode({"host": host, "port": port, **params})
        return f"postgresql://{auth}@/{name}?{query}"
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{auth}@{host}:{port}/{name}{query}"


def run_all(target: Callable[[int], object], count: int) -> list[BaseException]:
    """Call target(0..count-1) in threads released together, each on its own database connection.

    Returns the errors raised; fails if a thread is still running after two minutes (a deadlock).
    """
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def worker(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            target(n)
        except BaseException as err:  # collected for the caller to assert on
            errors.append(err)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a worker hung: deadlock or lock timeout"
    return errors


class _AdminForm(HTMLParser):
    """What a browser would submit from the admin's change form, as it was rendered."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self._in_form = False
        self._select: str | None = None
        self._select_first: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {key: value or "" for key, value in attrs}
        if tag == "form" and found.get("id", "").endswith("_form"):
            self._in_form = True
        name = found.get("name", "")
        if not self._in_form or ("__prefix__" in name):
            return
        if tag == "input" and name:
            kind = found.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in found:
                    self.fields[name] = found.get("value") or "on"
            elif kind not in ("submit", "button", "image", "file"):
                self.fields[name] = found.get("value", "")
        elif tag == "select" and name:
            self._select, self._select_first = name, None
        elif tag == "option" and self._select:
            if self._select_first is None:
                self._select_first = found.get("value", "")
            if "selected" in found:
                self.fields[self._select] = found.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.fields[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select:
            self.fields.setdefault(self._select, self._select_first or "")
            self._select = None
        elif tag == "textarea" and self._textarea:
            # Browsers drop the newline Django writes after the opening tag.
            self.fields[self._textarea] = self.fields[self._textarea].removeprefix("\r\n").removeprefix("\n")
            self._textarea = None
        elif tag == "form":
            self._in_form = False

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.fields[self._textarea] += data


def admin_form(client: Any, url: str) -> dict[str, str]:
    """The fields of the admin form at ``url`` with their current values, ready to change and post back."""
    response = client.get(url)
    assert response.status_code == 200, f"{url}: {response.status_code}"
    parser = _AdminForm()
    parser.feed(response.content.decode())
    return parser.fields


def error_fields(body: dict[str, Any]) -> set[str]:
    """The input fields an API error body names: each entry's ``field`` and its top-level name.

    ``lines[0].quantity`` gives ``{"lines[0].quantity", "lines"}``, so a test can ask either.
    """
    fields: set[str] = set()
    for entry in body["errors"]:
        if "field" in entry:
            fields |= {entry["field"], entry["field"].split(".")[0].split("[")[0]}
    return fields


ROOT = Path(__file__).resolve().parents[2]


class CeleryWorker:
    """A real `celery worker` process (its own session: killed as a whole), started and waited for."""

    def __init__(
        self,
        queues: str,
        *,
        env: Mapping[str, str],
        pool: str = "threads",
        concurrency: int = 4,
        include: str = "",
        hostname: str | None = None,
        ready_s: float = 30,
    ) -> None:
        command = [
            str(Path(sys.executable).with_name("celery")), "-A", "inventory_site", "worker", "-Q", queues,
            "--pool", pool, "--concurrency", str(concurrency), "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-l", "INFO",
            "--hostname", hostname or f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
        ]  # fmt: skip
        if include:  # test modules the worker imports at start (a test connector or tasks registering themselves)
            command += ["--include", include]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.output: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(ready_s):
            self.stop()
            raise RuntimeError("celery worker did not start:\n" + "".join(self.output[-40:]))

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if " ready" in line:
                self.ready.set()

    def kill(self) -> None:
        """SIGKILL, as a crashed machine: no shutdown, no acknowledgement."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
