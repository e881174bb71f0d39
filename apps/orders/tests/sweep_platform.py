"""A platform for tests with a real worker: the scripted connector, reading orders over loopback HTTP.

The worker imports this module at start (``celery worker --include``), which registers the
connector as ``scripted-http``; its ``orders_get`` asks the test process's small HTTP server
(``OrdersServer``), so the platform's truth lives in the test and the sweep runs in the worker.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from apps.channels import connectors
from apps.channels.connectors.base import ChannelRef, ConnectorError, PlatformOrder
from apps.channels.tests.scripted import ScriptedConnector, order_of

NAME = "scripted-http"
PATH = "apps.orders.tests.sweep_platform.HttpScriptedConnector"


class HttpScriptedConnector(ScriptedConnector):
    name = NAME

    def orders_get(self, channel: ChannelRef, external_ids: Sequence[str]) -> list[PlatformOrder]:
        query = urllib.parse.urlencode({"ids": ",".join(external_ids)})
        try:
            with urllib.request.urlopen(f"{channel.settings['shop_url']}/orders?{query}", timeout=5) as response:
                data = json.load(response)
        except OSError as err:
            raise ConnectorError(f"platform unreachable: {err}") from err
        return [order_of(order) for order in data["orders"]]


class OrdersServer:
    """The platform's orders as JSON (``{"id", "status", "lines"}``) by id; ``asked`` records each request."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.asked: list[list[str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ids = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).get("ids", [""])[0].split(",")
                server.asked.append(ids)
                body = json.dumps({"orders": [server.orders[i] for i in ids if i in server.orders]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> OrdersServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def register() -> None:
    connectors.CONNECTORS[NAME] = PATH
    connectors.connector_named.cache_clear()


register()  # imported by the worker: the connector is known there from the start
