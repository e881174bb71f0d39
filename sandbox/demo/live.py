"""The living demo behind `make run`: simulated channels and suppliers, tills and shoppers.

Everything goes through the running web server's real API, as integrators would: the staff
API wires two suppliers (a REST feed that inflates its numbers threefold and a CSV drop
folder), connects the webshop to a local Shopify store and the marketplace to a local Amazon
seller account (the platforms' fakes, see ``platforms.py``: real connector traffic), and points
the delivery app at a channel simulator speaking Stockroom's push protocol. Then, at a gentle
pace, shoppers buy on Shopify (its order webhook reserves in Stockroom) and on Amazon (imported
by the order poll), the delivery app sends its orders through the orders API, tills sell in two
stores, the warehouse receives deliveries, the stores are restocked, and the CSV supplier drops
a file now and then.

It opens no incident by itself: a till sells only what is on the shelf and not promised to an
online order (a shopper cannot buy what is not there), and the stores are restocked before
they run dry. Any incident a demo request opens anyway is logged as ``demo_incident_opened``
with its reason.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests
import structlog

from apps.suppliers.models import Supplier
from apps.suppliers.services.polling import supplier_poll
from sandbox.demo.platforms import MARKETPLACE, POS_STORE, WEBSHOP, DemoPlatforms, shopify_orders_after
from sandbox.simulator import ChannelSimulator

log = structlog.get_logger("stockroom.demo")

# Requests per second and burst the demo's channels take (the platforms' own limits come on top).
CHANNEL_RATES = {WEBSHOP: (5.0, 10), MARKETPLACE: (2.0, 4), "deliver1": (1.0, 2)}
# The channels on Stockroom's push protocol, each with a channel simulator; the others are on a platform.
SIMULATED_CHANNELS = ("deliver1",)
REST_SUPPLIER = "ACME"
CSV_SUPPLIER = "BULKCO"
ACME_ITEMS = {"HOOD-S": 40, "HOOD-M": 25, "HOOD-L": 30, "CAP": 60}
BULK_ITEMS = {"BULK-SOCK-12": ("SOCK", 12, 1, 30), "BULK-COFFEE-KG": ("COFFEE", 1, 1000, 80)}
STORES = ("S1", "S2")
TILL_ITEMS = (("HOOD-M", 1), ("HOOD-S", 1), ("CAP", 1), ("SOCK", 2), ("COFFEE", 250))
# In shoppers (loop turns): the warehouse's delivery and the stores' restock, and the CSV supplier's drop.
DELIVERY_EVERY = 60
CSV_EVERY = 45
ARRIVALS_EVERY = 5  # look for platform orders Stockroom has taken in (Amazon's come with the next order poll)


class SupplierFeedServer:
    """A supplier's REST endpoint: paginated JSON whose numbers are three times what it really has."""

    def __init__(self, *, inflation: float = 3.0, page_size: int = 2) -> None:
        self.real = dict(ACME_ITEMS)
        self.inflation, self.page_size = inflation, page_size
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page = int(parse_qs(urlparse(self.path).query).get("page", ["1"])[0])
                body = json.dumps(server.page(page)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/items"

    def page(self, number: int) -> dict[str, Any]:
        with self.lock:
            rows = sorted(self.real.items())
        chunk = rows[(number - 1) * self.page_size : number * self.page_size]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        items = [
            {"supplier_sku": f"ACME-{sku}", "quantity": int(n * self.inflation), "updated_at": now} for sku, n in chunk
        ]
        return {"items": items}

    def sell_elsewhere(self, rng: random.Random) -> None:
        with self.lock:
            sku = rng.choice(sorted(self.real))
            self.real[sku] = max(0, self.real[sku] - rng.randint(1, 3)) if rng.random() < 0.8 else self.real[sku] + 10

    def start(self) -> SupplierFeedServer:
        threading.Thread(target=self.httpd.serve_forever, name="demo-supplier", daemon=True).start()
        return self


@dataclass
class Api:
    base: str
    token: str
    session: requests.Session = field(default_factory=requests.Session)

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = None, key: str = "") -> Any:
        headers = {"Authorization": f"Token {token or self.token}"}
        if key:
            headers["Idempotency-Key"] = key
        response = self.session.request(method, f"{self.base}/api/v1/{path}", json=body, headers=headers, timeout=10)
        if response.status_code >= 500:
            log.warning("demo_api_error", path=path, status=response.status_code)
        return response


class LiveDemo:
    def __init__(
        self, *, base_url: str, staff_token: str, channel_tokens: dict[str, str], var_dir: Path, seed: int = 0
    ):
        self.api = Api(base_url, staff_token)
        self.channel_tokens = channel_tokens
        self.rng = random.Random(seed)
        # Below the drop root (STOCKROOM_DROP_ROOT, by default <var>/drop): folder suppliers read nowhere else.
        self.drop = var_dir / "drop" / "bulkco"
        self.simulators: dict[str, ChannelSimulator] = {}
        self.platforms: DemoPlatforms | None = None
        self.acme: SupplierFeedServer | None = None
        self.open_orders: list[tuple[int, str, str]] = []  # (turn it ships or is cancelled, channel, order id)
        self.turn = 0
        self.counter = 0
        self.shelf_targets: dict[tuple[str, str], int] = {}  # (store, sku) -> units a full shelf holds
        self.incidents = 0  # opened by the demo's own requests (none expected)
        self.awaited: dict[tuple[str, str], float] = {}  # (channel, platform order id) -> placed at (monotonic)

    # --- wiring ------------------------------------------------------------------------------

    def wire(self) -> None:
        self.drop.mkdir(parents=True, exist_ok=True)
        self.acme = SupplierFeedServer().start()
        for code, (rate, burst) in CHANNEL_RATES.items():
            body: dict[str, Any] = {"rate_per_s": rate, "burst": burst}
            if code in SIMULATED_CHANNELS:
                secret = f"demo-{code}-secret"
                self.simulators[code] = ChannelSimulator(rate=rate, burst=burst, secret=secret).start()
                body.update(push_url=self.simulators[code].url, secret=secret)
            self.api.call("patch", f"channels/{code}/", body)
        self._ensure(
            "suppliers",
            REST_SUPPLIER,
            {
                "code": REST_SUPPLIER,
                "name": "Acme Apparel (REST, inflates 3x)",
                "connector": "rest",
                "settings": {"url": self.acme.url, "items_key": "items", "page_param": "page"},
                "trust_factor": "0.300",
                "cap": 20,
                "max_age_minutes": 10,
                "poll_interval_s": 60,
            },
        )
        self._ensure(
            "suppliers",
            CSV_SUPPLIER,
            {
                "code": CSV_SUPPLIER,
                "name": "Bulk & Co (CSV drop folder)",
                "connector": "folder",
                "settings": {"path": str(self.drop), "format": "csv"},
                "trust_factor": "0.900",
                "cap": 100000,
                "max_age_minutes": 15,
                "poll_interval_s": 60,
            },
        )
        existing = {(m["supplier"], m["supplier_sku"]) for m in self._all("supplier-products/")}
        mappings = [(REST_SUPPLIER, f"ACME-{sku}", sku, 1, 1) for sku in ACME_ITEMS]
        mappings += [(CSV_SUPPLIER, code, item, pack, factor) for code, (item, pack, factor, _) in BULK_ITEMS.items()]
        for supplier, supplier_sku, item, pack, factor in mappings:
            if (supplier, supplier_sku) not in existing:
                self.api.call(
                    "post",
                    "supplier-products/",
                    {
                        "supplier": supplier,
                        "supplier_sku": supplier_sku,
                        "item": item,
                        "units_per_pack": pack,
                        "unit_factor": factor,
                    },
                )
        self.api.call("patch", f"channels/{MARKETPLACE}/", {"locations": ["WH", REST_SUPPLIER]})
        self.platforms = DemoPlatforms.start(
            base_url=self.api.base, shopify_orders_after=shopify_orders_after(self.api, self.channel_tokens[WEBSHOP])
        )
        self.platforms.connect(self.api)
        # What the stores hold at the start is what a full shelf holds; the restock tops them up to it.
        for store in STORES:
            for level in self._levels(store):
                self.shelf_targets[(store, level["item"])] = max(int(level["on_hand"]), 2)
        self.drop_csv()
        log.info("demo_wired", channels=self.channel_urls(), supplier_feed=self.acme.url)

    def first_polls(self) -> dict[str, str]:
        """Each supplier's first feed now, not a minute from now: the dashboard opens on fresh feeds."""
        outcome: dict[str, str] = {}
        for supplier in Supplier.objects.filter(code__in=[REST_SUPPLIER, CSV_SUPPLIER], is_active=True):
            runs = supplier_poll(supplier_id=supplier.pk)
            outcome[supplier.code] = ", ".join(f"{run.status} ({run.rows_accepted} rows)" for run in runs) or "skipped"
        return dict(sorted(outcome.items()))

    def channel_urls(self) -> dict[str, str]:
        """Where each demo channel's quantities go: the platform fakes and the channel simulators."""
        urls = {code: f"channel simulator {sim.url}" for code, sim in self.simulators.items()}
        if self.platforms is not None:
            urls[WEBSHOP] = f"Shopify fake {self.platforms.shopify.url}"
            urls[MARKETPLACE] = f"Amazon SP-API fake {self.platforms.amazon.url}"
        return dict(sorted(urls.items()))

    def stop(self) -> None:
        """Stop the servers the demo started (tests; `make run` ends the process)."""
        for simulator in self.simulators.values():
            simulator.stop()
        if self.platforms is not None:
            self.platforms.stop()
        if self.acme is not None:
            self.acme.httpd.shutdown()

    def _all(self, path: str) -> list[dict[str, Any]]:
        rows, url = [], path
        while url:
            page = self.api.call("get", url).json()
            rows += page.get("results", [])
            url = page["next"].split("/api/v1/", 1)[1] if page.get("next") else ""
        return rows

    def _ensure(self, collection: str, code: str, body: dict[str, Any]) -> None:
        if self.api.call("get", f"{collection}/{code}/").status_code == 404:
            response = self.api.call("post", f"{collection}/", body)
            log.info("demo_created", what=collection, code=code, status=response.status_code)
        else:  # made by an earlier start: its servers listen elsewhere now
            self.api.call("patch", f"{collection}/{code}/", {"settings": body["settings"]})

    # --- traffic -------------------------------------------------------------------------------

    def drop_csv(self) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = ["supplier_sku,quantity,updated_at,description"]
        for code, (_, _, _, typical) in BULK_ITEMS.items():
            lines.append(f"{code},{max(0, typical + self.rng.randint(-10, 10))},{now},demo")
        (self.drop / f"bulkco-{int(time.time())}.csv").write_text("\n".join(lines) + "\n")

    def _key(self, what: str) -> str:
        self.counter += 1
        return f"demo-{what}-{int(time.time())}-{self.counter}"

    def online_order(self, channel: str, mode: str) -> None:
        """An order through the orders API, as a channel on Stockroom's push protocol sends it."""
        listings = [row for row in self._available(channel) if row["available"] > 0]
        if not listings:
            return
        row = self.rng.choice(listings)
        key = self._key("order")
        body = {"external_id": key, "lines": [{"sku": row["sku"], "quantity": 1}], "mode": mode, "hold_minutes": 5}
        response = self.api.call("post", "orders/", body, token=self.channel_tokens[channel], key=key)
        log.info("demo_order", channel=channel, sku=row["sku"], mode=mode, status=response.status_code)
        if response.status_code == 201:
            order = response.json()
            self._short(channel, order)
            self.open_orders.append((self.turn + self.rng.randint(8, 45), channel, str(order["id"])))

    def platform_order(self, channel: str) -> None:
        """A shopper buys on the channel's platform, from what the platform shows (Stockroom's last push)."""
        assert self.platforms is not None, "wire() first"
        if channel == WEBSHOP:
            placed = self.platforms.shopify_order(self.rng)
            order_id = str(placed["id"]) if placed else None
        else:
            order_id = self.platforms.amazon_order(self.rng)
        if order_id is None:
            return
        self.awaited[(channel, order_id)] = time.monotonic()
        self.open_orders.append((self.turn + self.rng.randint(8, 45), channel, order_id))
        if channel == WEBSHOP:  # Shopify's webhook came with the checkout
            self.platform_orders_arrived()

    def platform_orders_arrived(self) -> None:
        """Log each order placed on a platform once Stockroom has it (webhook or poll), with how long it took."""
        for (channel, external_id), placed_at in list(self.awaited.items()):
            response = self.api.call("get", f"orders/?external_id={external_id}", token=self.channel_tokens[channel])
            found = response.json().get("results", []) if response.status_code == 200 else []
            if not found:
                continue
            del self.awaited[(channel, external_id)]
            order = found[0]
            log.info(
                "demo_platform_order_in",
                channel=channel,
                platform_order=external_id,
                order=order["id"],
                status=order.get("status"),
                after_s=round(time.monotonic() - placed_at, 1),
            )
            self._short(channel, order)

    def _short(self, channel: str, order: dict[str, Any]) -> None:
        short = sum(int(line.get("unallocated_quantity") or 0) for line in order.get("lines", []))
        if short:
            self._incident(f"{channel} import", {"kind": "oversell", "detail": f"order {order['id']} short by {short}"})

    def _available(self, channel: str) -> list[dict[str, Any]]:
        skus = [
            f"{channel.upper()}-{p}" for p in ("HOOD-S", "HOOD-M", "HOOD-L", "CAP", "SOCK-3PK", "COFFEE-500", "KIT")
        ]
        query = "&".join(f"sku={s}" for s in skus)
        response = self.api.call("get", f"availability/?{query}", token=self.channel_tokens[channel])
        return response.json().get("results", []) if response.status_code == 200 else []

    def settle_orders(self) -> None:
        due = [o for o in self.open_orders if o[0] <= self.turn]
        self.open_orders = [o for o in self.open_orders if o[0] > self.turn]
        for _, channel, order_id in due:
            action = "cancel" if self.rng.random() < 0.1 else "fulfil"
            if self.platforms is not None and channel in (WEBSHOP, MARKETPLACE):
                self.platforms.settle(channel, order_id, action)  # Stockroom hears of it as of the order
                if action == "cancel":  # cancelled before Stockroom saw it: it never will (nothing was held)
                    self.awaited.pop((channel, order_id), None)
                continue
            response = self.api.call(
                "post", f"orders/{order_id}/{action}/", {}, token=self.channel_tokens[channel], key=self._key(action)
            )
            log.debug("demo_order_settled", channel=channel, order=order_id, action=action, status=response.status_code)

    def _levels(self, location: str, item: str = "") -> list[dict[str, Any]]:
        query = f"stock/levels/?location={location}" + (f"&item={item}" if item else "")
        response = self.api.call("get", query)
        return response.json().get("results", []) if response.status_code == 200 else []

    def till_sale(self) -> None:
        store = self.rng.choice(STORES)
        item, quantity = self.rng.choice(TILL_ITEMS)
        # A shopper takes what is on the shelf and not set aside for an online order: nothing else is there.
        level = next(iter(self._levels(store, item)), None)
        on_shelf = int(level["on_hand"]) - int(level["reserved"]) if level else 0
        if on_shelf < quantity:
            log.info("demo_till_empty_shelf", store=store, item=item, on_shelf=on_shelf)
            return
        if store == POS_STORE and self.platforms is not None and self.platforms.pos_sale(item, quantity):
            return  # sold on Shopify POS: Shopify's webhook books it as this store's till sale
        response = self.api.call(
            "post",
            "stock/movements/",
            {
                "location": store,
                "item": item,
                "kind": "pos_sale",
                "quantity": quantity,
                "idempotency_key": self._key("pos"),
            },
        )
        log.info("demo_till_sale", store=store, item=item, quantity=quantity, status=response.status_code)
        incident = response.json().get("incident") if response.status_code == 201 else None
        if incident:
            self._incident("till sale", incident)

    def _incident(self, what: str, incident: dict[str, Any]) -> None:
        """Not meant to happen in the demo: say so loudly, with the reason, where a person watches."""
        self.incidents += 1
        log.warning(
            "demo_incident_opened",
            cause=what,
            incident=incident.get("id"),
            kind=incident.get("kind"),
            detail=incident.get("detail"),
            note="unintended: the demo does not mean to show an incident",
        )

    def restock_stores(self) -> None:
        """The stores' weekly van, sped up: each item at half its shelf or less is topped up to a full shelf."""
        for store in STORES:
            for level in self._levels(store):
                target = self.shelf_targets.get((store, level["item"]))
                usable = int(level["on_hand"]) - int(level["reserved"])
                if target is None or usable > target // 2:
                    continue
                self.api.call(
                    "post",
                    "stock/movements/",
                    {
                        "location": store,
                        "item": level["item"],
                        "kind": "receipt",
                        "quantity": target - usable,
                        "idempotency_key": self._key("restock"),
                    },
                )
                log.info("demo_restock", store=store, item=level["item"], quantity=target - usable)

    def delivery(self) -> None:
        for item, quantity in (("HOOD-S", 4), ("HOOD-M", 6), ("HOOD-L", 4), ("CAP", 8), ("SOCK", 30)):
            self.api.call(
                "post",
                "stock/movements/",
                {
                    "location": "WH",
                    "item": item,
                    "kind": "receipt",
                    "quantity": quantity,
                    "idempotency_key": self._key("receipt"),
                },
            )
        log.info("demo_delivery", location="WH")

    def run(self, stop: threading.Event, *, pace_s: float = 2.0) -> None:
        while not stop.is_set():
            self.turn += 1
            roll = self.rng.random()
            try:
                if roll < 0.35:
                    self.platform_order(WEBSHOP)
                elif roll < 0.55:
                    self.platform_order(MARKETPLACE)
                elif roll < 0.65:
                    self.online_order("deliver1", "import")
                else:
                    self.till_sale()
                self.settle_orders()
                if self.turn % ARRIVALS_EVERY == 0:
                    self.platform_orders_arrived()
                if self.acme is not None:
                    self.acme.sell_elsewhere(self.rng)
                if self.turn % DELIVERY_EVERY == 0:
                    self.delivery()
                    self.restock_stores()
                if self.turn % CSV_EVERY == 0:
                    self.drop_csv()
            except requests.RequestException as err:
                log.warning("demo_request_failed", error=str(err))
            stop.wait(self.rng.uniform(0.5, 1.5) * pace_s)
