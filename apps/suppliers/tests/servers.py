"""Real servers on loopback for connector tests: an HTTP server and a paramiko SFTP server, each in a thread."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import paramiko

# --- HTTP -----------------------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpServer:
    url: str
    requests: list[Recorded] = field(default_factory=list)
    # handler(request) -> (status, headers, body bytes); may sleep to be slow.
    handler: Callable[[Recorded], tuple[int, dict[str, str], bytes]] = lambda r: (200, {}, b"{}")


def json_response(body: Any, status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


@contextmanager
def http_server() -> Iterator[HttpServer]:
    state = HttpServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parsed = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            recorded = Recorded(
                self.command, parsed.path, parse_qs(parsed.query), dict(self.headers.items()), self.rfile.read(length)
            )
            state.requests.append(recorded)
            try:
                status, headers, body = state.handler(recorded)
            except (BrokenPipeError, ConnectionResetError):
                return
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = _serve
        do_POST = _serve

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# --- SFTP -----------------------------------------------------------------------------------------


class _Auth(paramiko.ServerInterface):
    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password

    def check_auth_password(self, username: str, password: str) -> int:
        if (username, password) == (self.username, self.password):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _Handle(paramiko.SFTPHandle):
    def stat(self) -> paramiko.SFTPAttributes:
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))


def _sftp_interface(root: Path) -> type[paramiko.SFTPServerInterface]:
    class Folder(paramiko.SFTPServerInterface):
        def _real(self, path: str) -> str:
            return str(root / path.lstrip("/"))

        def _errors(self, call: Callable[[], Any]) -> Any:
            try:
                return call()
            except OSError as err:
                return paramiko.SFTPServer.convert_errno(err.errno)

        def list_folder(self, path: str) -> Any:
            real = self._real(path)

            def listing() -> list[paramiko.SFTPAttributes]:
                return [
                    paramiko.SFTPAttributes.from_stat(os.stat(os.path.join(real, name)), filename=name)
                    for name in os.listdir(real)
                ]

            return self._errors(listing)

        def stat(self, path: str) -> Any:
            return self._errors(lambda: paramiko.SFTPAttributes.from_stat(os.stat(self._real(path))))

        lstat = stat

        def open(self, path: str, flags: int, attr: Any) -> Any:
            def opening() -> _Handle:
                handle = _Handle(flags)
                handle.filename = self._real(path)
                handle.readfile = open(self._real(path), "rb")  # noqa: SIM115 - closed by paramiko
                return handle

            return self._errors(opening)

        def rename(self, oldpath: str, newpath: str) -> int:
            return self._errors(lambda: os.rename(self._real(oldpath), self._real(newpath)) or paramiko.SFTP_OK)

        def mkdir(self, path: str, attr: Any) -> int:
            return self._errors(lambda: os.mkdir(self._real(path)) or paramiko.SFTP_OK)

        def canonicalize(self, path: str) -> str:
            return "/" + path.lstrip("/")

    return Folder


@dataclass
class SftpServer:
    host: str
    port: int
    host_key: str  # "<type> <base64>" as in known_hosts
    username: str
    password: str
    root: Path
    connections: int = 0


@contextmanager
def sftp_server(root: Path, *, username: str = "feeds", password: str = "s3cret-pass") -> Iterator[SftpServer]:
    key = paramiko.ECDSAKey.generate()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    state = SftpServer(
        "127.0.0.1", listener.getsockname()[1], f"{key.get_name()} {key.get_base64()}", username, password, root
    )
    stop = threading.Event()
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            state.connections += 1
            transport = paramiko.Transport(conn)
            transport.add_server_key(key)
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _sftp_interface(root))
            try:
                transport.start_server(server=_Auth(username, password))
            except (paramiko.SSHException, EOFError, OSError):
                continue
            transports.append(transport)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        listener.close()
        for transport in transports:
            transport.close()
        thread.join(timeout=2)
        time.sleep(0.05)
