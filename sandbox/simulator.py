"""A channel on loopback: accepts signed pushes under a rate limit and records when each update arrived.

It speaks the push protocol (docs/architecture.md, "Channel sync"): ``POST /`` with ``{"channel", "updates":
[{"sku", "available", "as_of"}]}`` and ``X-Stockroom-Signature: sha256=<hmac>``; a bad
signature gets 401, more than its rate gets 429 with ``Retry-After``. ``GET /?sku=A&sku=B``
reads back what it shows (``{"results": [{"sku", "available", "as_of"}]}``), and
``GET /_log`` returns every request and update with its arrival time, for tests and
benchmarks. Used in-process (``ChannelSimulator(...).start()``) or as
``manage.py channel_simulator``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sandbox.fakes.bucket import RequestBucket

SIGNATURE_HEADER = "X-Stockroom-Signature"


@dataclass
class Arrival:
    sku: str
    available: int
    as_of: str
    arrived_at: float  # Unix time, seconds


@dataclass
class SimulatorState:
    shown: dict[str, Arrival] = field(default_factory=dict)
    updates: list[Arrival] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)


class ChannelSimulator:
    """A threaded HTTP server standing in for a marketplace. Thread-safe; start() returns self."""

    def __init__(self, *, rate: float = 5.0, burst: int = 10, secret: str = "", host: str = "127.0.0.1", port: int = 0):
        self.rate, self.burst, self.secret = rate, burst, secret
        self.lock = threading.Lock()
        self.state = SimulatorState()
        self.bucket = RequestBucket(rate, burst)
        # Failure modes for tests: answer this status (with Retry-After when given), or be slow.
        self.down_status: int | None = None
        self.down_retry_after: str | None = None
        self.down_remaining: int | None = None  # answer down_status this many times, then recover
        self.delay_s = 0.0
        self.throttled = 0
        self.unauthorized = 0
        self.request_arrived = threading.Event()
        # POSTs being answered right now, and the most ever at once (one pusher per channel: never above 1).
        self.in_flight = 0
        self.max_in_flight = 0
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{name}:{port}/"

    def start(self) -> ChannelSimulator:
        self._thread = threading.Thread(target=self._server.serve_forever, name="channel-simulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- reading what arrived ------------------------------------------------------------

    def shown(self, sku: str) -> int | None:
        with self.lock:
            arrival = self.state.shown.get(sku)
            return None if arrival is None else arrival.available

    def updates(self, sku: str | None = None) -> list[Arrival]:
        with self.lock:
            return [u for u in self.state.updates if sku is None or u.sku == sku]

    def accepted_times(self) -> list[float]:
        with self.lock:
            return [r["at"] for r in self.state.requests if r["method"] == "POST" and r["status"] == 200]

    def log(self) -> dict[str, Any]:
        with self.lock:
            return {
                "rate": self.rate,
                "burst": self.burst,
                "throttled": self.throttled,
                "unauthorized": self.unauthorized,
                "requests": list(self.state.requests),
                "updates": [u.__dict__ for u in self.state.updates],
            }

    # --- the HTTP side -------------------------------------------------------------------

    def _admit(self) -> tuple[int, dict[str, str]]:
        if self.down_status is not None:
            status = self.down_status
            headers = {"Retry-After": self.down_retry_after} if self.down_retry_after else {}
            with self.lock:
                if self.down_remaining is not None:
                    self.down_remaining -= 1
                    if self.down_remaining <= 0:
                        self.down_status = self.down_remaining = None
            if status == 429:
                with self.lock:
                    self.throttled += 1
            return status, headers
        with self.lock:
            wait = self.bucket.take()
            if wait > 0:
                self.throttled += 1
                return 429, {"Retry-After": str(max(1, math.ceil(wait)))}
        return 200, {}

    def _record(self, method: str, status: int, count: int = 0) -> None:
        with self.lock:
            self.state.requests.append({"at": time.time(), "method": method, "status": status, "updates": count})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path.rstrip("/") == "/_log":
                    self._reply(200, sim.log())
                    return
                status, headers = sim._admit()
                sim._record("GET", status)
                if status != 200:
                    self._reply(status, {"error": "unavailable" if status != 429 else "throttled"}, headers)
                    return
                skus = parse_qs(parts.query).get("sku", [])
                with sim.lock:
                    results = []
                    for sku in skus:
                        arrival = sim.state.shown.get(sku)
                        results.append(
                            {
                                "sku": sku,
                                "available": None if arrival is None else arrival.available,
                                "as_of": None if arrival is None else arrival.as_of,
                            }
                        )
                self._reply(200, {"results": results})

            def do_POST(self) -> None:
                with sim.lock:
                    sim.in_flight += 1
                    sim.max_in_flight = max(sim.max_in_flight, sim.in_flight)
                try:
                    self._post()
                finally:
                    with sim.lock:
                        sim.in_flight -= 1

            def _post(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if sim.delay_s:
                    sim.request_arrived.set()
                    time.sleep(sim.delay_s)
                expected = "sha256=" + hmac.new(sim.secret.encode(), body, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(expected, self.headers.get(SIGNATURE_HEADER, "")):
                    with sim.lock:
                        sim.unauthorized += 1
                    sim._record("POST", 401)
                    self._reply(401, {"error": "bad signature"})
                    return
                status, headers = sim._admit()
                if status != 200:
                    sim._record("POST", status)
                    self._reply(status, {"error": "throttled" if status == 429 else "unavailable"}, headers)
                    return
                try:
                    payload = json.loads(body)
                    updates = [(str(u["sku"]), int(u["available"]), str(u["as_of"])) for u in payload["updates"]]
                except (ValueError, KeyError, TypeError):
                    sim._record("POST", 400)
                    self._reply(400, {"error": "bad body"})
                    return
                now = time.time()
                with sim.lock:
                    for sku, available, as_of in updates:
                        arrival = Arrival(sku, available, as_of, now)
                        sim.state.updates.append(arrival)
                        sim.state.shown[sku] = arrival
                    sim.state.requests.append({"at": now, "method": "POST", "status": 200, "updates": len(updates)})
                sim.request_arrived.set()
                self._reply(200, {"accepted": len(updates)})

        return Handler


def max_requests_in_window(times: list[float], window: float) -> int:
    """The most requests that fell in any window of this length (to check a rate limit held)."""
    ordered, best, start = sorted(times), 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best
