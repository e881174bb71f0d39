"""A Server-Sent Events client for tests and the bench: real HTTP on loopback, events parsed as a browser does."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urlencode

STREAM_PATH = "/api/v1/availability/stream/"


@dataclass
class Received:
    id: str | None
    event: str
    data: Any
    at: float  # time.time() when it arrived


@dataclass
class StreamClient:
    port: int
    token: str
    skus: Iterable[str] = ()
    last_event_id: str | None = None
    query: str | None = None
    events: list[Received] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    status: int = 0
    body: bytes = b""
    closed: bool = False

    def __post_init__(self) -> None:
        self.changed = threading.Condition()
        self.conn = HTTPConnection("127.0.0.1", self.port, timeout=60)
        query = self.query if self.query is not None else urlencode([("sku", s) for s in self.skus])
        headers = {"Authorization": f"Token {self.token}", "Accept": "text/event-stream"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        self.conn.request("GET", STREAM_PATH + (f"?{query}" if query else ""), headers=headers)
        self.sock = self.conn.sock
        self.response = self.conn.getresponse()
        self.status = self.response.status
        if self.status != 200:
            self.body = self.response.read()
            self.closed = True
            return
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def json(self) -> Any:
        return json.loads(self.body)

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            while True:
                raw = self.response.readline()
                if not raw:
                    break
                line = raw.decode().rstrip("\r\n")
                if line == "":
                    if "data" in fields:
                        data = fields["data"]
                        try:
                            parsed: Any = json.loads(data)
                        except ValueError:
                            parsed = data
                        with self.changed:
                            self.events.append(
                                Received(fields.get("id"), fields.get("event", "message"), parsed, time.time())
                            )
                            self.changed.notify_all()
                    fields = {}
                elif line.startswith(":"):
                    with self.changed:
                        self.comments.append(line)
                        self.changed.notify_all()
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
        except (OSError, ValueError, AttributeError):  # closed by us (http.client drops its file first)
            pass
        with self.changed:
            self.closed = True
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[StreamClient], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
        return True

    def data_for(self, sku: str) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.event == "message" and e.data.get("sku") == sku]

    def last_id(self) -> str | None:
        ids = [e.id for e in self.events if e.id]
        return ids[-1] if ids else None

    def close(self) -> None:
        try:
            if self.sock is not None:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


class AsgiServer:
    """The web process's ASGI application (inventory_site.asgi) under uvicorn, in a thread of this process, on
    a free loopback port: the test's database and settings are the server's."""

    def __init__(self) -> None:
        import uvicorn

        from inventory_site.asgi import application

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            application,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> AsgiServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        _close_server_connections()


def _close_server_connections() -> None:
    """The server's threads keep database connections; close them so the test database can be dropped."""
    from asgiref.sync import SyncToAsync
    from django.db import connections

    from apps.channels.stream import hub
    from apps.channels.stream.publish import publisher

    publisher.release()

    both = threading.Barrier(2, timeout=10)

    def close_in_this_thread() -> None:
        connections.close_all()
        both.wait()  # so that the other call runs in the other thread

    for future in [hub._database.submit(close_in_this_thread) for _ in range(2)]:
        future.result(timeout=15)
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)
