"""How the simulation reaches the API: in-process through Django's test client, or over real HTTP.

Over HTTP the simulation starts gunicorn on a free loopback port (several worker processes,
so both cores work) and talks to it with one keep-alive session per thread.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol, cast

import requests
from django.conf import settings
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parents[3]


class Answer(Protocol):
    status_code: int
    content: bytes

    def json(self, **kwargs: Any) -> Any: ...


class Transport(Protocol):
    def request(self, method: str, path: str, *, body: bytes | None, headers: dict[str, str]) -> Answer: ...


class InProcess:
    """The whole Django stack, without sockets (tests)."""

    def request(self, method: str, path: str, *, body: bytes | None, headers: dict[str, str]) -> Answer:
        client = APIClient()
        call = getattr(client, method.lower())
        if body is None:
            return call(path, headers=headers)
        return call(path, body, content_type="application/json", headers=headers)


class Http:
    """Real HTTP against a running server."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._local = threading.local()

    def request(self, method: str, path: str, *, body: bytes | None, headers: dict[str, str]) -> Answer:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        if body is not None:
            headers = {**headers, "Content-Type": "application/json"}
        return cast(
            Answer, session.request(method.upper(), f"{self.base_url}{path}", data=body, headers=headers, timeout=30)
        )


class LocalServer:
    """gunicorn on a free loopback port, with the same database and Redis as this process."""

    def __init__(self, *, workers: int = 4) -> None:
        self.workers = workers
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LocalServer:
        env = {
            **os.environ,
            "DATABASE_URL": settings.DATABASE_URL,
            "REDIS_URL": settings.REDIS_URL,
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "inventory_site.settings.local"),
            "LOG_LEVEL": "WARNING",
            "DEBUG": "0",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "inventory_site.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers), "--log-level", "warning", "--timeout", "120"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code in (200, 503):
                    return self
            except requests.RequestException:
                time.sleep(0.3)
        self.__exit__()
        raise RuntimeError("the simulation's web server did not come up")

    def __exit__(self, *_exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)
