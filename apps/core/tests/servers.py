"""Real HTTP(S) servers on loopback for the outbound and leak tests: what an attacker (or a broken host)
would run, each recording every request it gets."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Seen:
    """One request as the server got it: the raw request line, headers and body."""

    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]
    body: bytes

    def dump(self) -> str:
        head = "\n".join(f"{name}: {value}" for name, value in self.headers.items())
        return f"{self.method} {self.target}\n{head}\n\n{self.body.decode(errors='replace')}"


Reply = tuple[int, dict[str, str], bytes]
Handler = Callable[[Seen], Reply]


@dataclass
class Server:
    url: str
    seen: list[Seen] = field(default_factory=list)
    handler: Handler = lambda seen: (200, {"Content-Type": "application/json"}, b"{}")


def echo(status: int = 500) -> Handler:
    """Answers ``status`` with a body that repeats the whole request (headers, query, form) in every field an
    error parser might pick: a message built from it would carry any secret the request carried."""

    def handler(seen: Seen) -> Reply:
        text = seen.dump()
        body = {
            "message": text,
            "error": text,
            "error_description": text,
            "code": text,
            "detail": text,
            "reason": text,
            "errors": [{"code": text, "message": text, "details": text}],
        }
        return status, {"Content-Type": "application/json"}, json.dumps(body).encode()

    return handler


@contextmanager
def http_server(
    handler: Handler | None = None, *, host: str = "127.0.0.1", tls: tuple[str, str] | None = None
) -> Iterator[Server]:
    """A threaded HTTP (or HTTPS, with ``tls=(cert, key)``) server on ``host`` and a free port."""
    state = Server(url="")
    if handler is not None:
        state.handler = handler

    class RequestHandler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen = Seen(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
            state.seen.append(seen)
            status, headers, body = state.handler(seen)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer((host, 0), RequestHandler)
    server.daemon_threads = True
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    state.url = f"{scheme}://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_url(scheme: str = "http", host: str = "127.0.0.1") -> str:
    """An address where nothing listens (connection refused)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    return f"{scheme}://{host}:{port}"


def self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[str, str]:
    """A certificate for ``host`` (its own CA) and its key, as PEM files: (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "outbound-cert.pem", directory / "outbound-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)
