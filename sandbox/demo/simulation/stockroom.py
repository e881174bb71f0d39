"""Stockroom in the simulation, driven through its real HTTP API as channels and tills would.

Setup goes through the staff API; online orders through the channel API (reserve for the
webshop, import for marketplaces); till sales and deliveries through the movements API;
supplier feeds through the signed webhook and a CSV file import. Marketplaces see what the
availability API says, refreshed every tick (the sync latency of the simulation).

Safety stock follows the forecasting math: per hour of the day, the demand Stockroom cannot
refuse that is expected in the exposure window, at the chosen service level ("dynamic"), or
one number all day ("fixed": what the busiest hour needs; "fixed-matched": those numbers scaled
down until they hold back as many units as "dynamic" does on average), written through the
catalog's safety writer. At the stores that demand is till sales over the exposure window; at
a drop-ship supplier it is the supplier's own sales elsewhere over the feed's max age (how long
one feed figure may still sell), which in production shows as its reported stock falling
between feeds, and is learnt as one rate for the whole day.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Count, Q

from apps.catalog.models import Incident, Item, Location
from apps.catalog.stock.safety import safety_apply
from apps.core.services import planner_statistics_refresh, token_create
from apps.forecasting.services.math import safety_levels
from apps.orders.models import OrderLine, Reservation
from apps.orders.services import order_supplier_refused
from apps.suppliers.services.webhooks import webhook_signature
from sandbox.demo.simulation.engine import Decision
from sandbox.demo.simulation.events import Event, Stream
from sandbox.demo.simulation.transport import InProcess, Transport
from sandbox.demo.simulation.world import World

ALL_DAY = 24  # the hour key of a rate that holds all day
SAFETY_MODES = ("dynamic", "fixed", "fixed-matched", "none")
NAMES = {"fixed-matched": "Stockroom (fixed safety stock, as many units as dynamic)"}


class SimulationError(RuntimeError):
    """The API answered something a channel or till would not accept."""


class StockroomSystem:
    def __init__(
        self,
        *,
        tick_s: float,
        safety: str = "dynamic",
        service_level: float = 0.95,
        exposure_minutes: float = 70.0,
        work_dir: Path,
        transport: Transport | None = None,
    ) -> None:
        self.name = NAMES.get(safety, f"Stockroom ({safety} safety stock)")
        self.display_interval_s = tick_s
        self.safety_mode, self.service_level = safety, service_level
        self.exposure_hours = exposure_minutes / 60
        self.run = uuid.uuid4().hex[:6]
        self.work_dir = work_dir
        self.transport: Transport = transport or InProcess()
        self._orders: dict[str, tuple[int, str]] = {}  # event key -> (order id, channel)
        self._safety_hour = -1
        # Held back now and summed over the ticks so far: [stores, suppliers], in sale units.
        self._hidden_now = [0, 0]
        self._hidden_total = [0, 0]
        self._hidden_ticks = 0
        self._fixed: dict[tuple[int, int], int] | None = None

    # --- names: every run gets its own codes so runs never collide ------------------------

    def code(self, name: str) -> str:
        return f"{self.run}-{name}"

    def _call(
        self, token: str, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201), **headers: str
    ) -> Any:
        response = self.transport.request(
            method,
            f"/api/v1/{path}",
            body=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Token {token}", **headers},
        )
        if response.status_code not in ok:
            raise SimulationError(f"{method.upper()} {path} -> {response.status_code}: {response.content[:400]!r}")
        return response

    # --- setup ------------------------------------------------------------------------------

    def setup(self, world: World, stream: Stream) -> None:
        self.world = world
        user = get_user_model().objects.create_user(username=f"sim-{self.run}", is_staff=True, is_superuser=True)
        self.staff = token_create(staff_username=user.username)
        for code in world.stores:
            self._call(
                self.staff, "post", "locations/", {"code": self.code(code), "name": f"Store {code}", "kind": "store"}
            )
        self._call(
            self.staff,
            "post",
            "locations/",
            {"code": self.code(world.warehouse), "name": "Warehouse", "kind": "warehouse"},
        )
        for sku in world.items:
            self._call(
                self.staff, "post", "items/", {"sku": self.code(sku), "name": sku, "unit": world.item_units[sku]}
            )
        for product in world.products:
            components = [{"item": self.code(sku), "quantity": units} for sku, units in product.components]
            self._call(
                self.staff,
                "post",
                "products/",
                {"code": self.code(product.code), "name": product.code, "kind": product.kind, "components": components},
            )
        self.secrets = {}
        self.drop_dirs: dict[str, Path] = {}
        supplied = sorted({sku for sku, _ in world.supplier_real})
        for supplier in world.suppliers:
            secret = f"sim-secret-{supplier.code}"
            settings: dict[str, Any] = {}
            if supplier.connector == "folder":
                drop = self.work_dir / self.code(supplier.code)
                drop.mkdir(parents=True, exist_ok=True)
                self.drop_dirs[supplier.code] = drop
                # The simulation hands each file to import_feed itself; the folder the supplier names
                # (below the drop root, where folder suppliers must read) is never polled.
                settings = {"path": f"simulation-{self.code(supplier.code)}", "format": "csv"}
            self._call(
                self.staff,
                "post",
                "suppliers/",
                {
                    "code": self.code(supplier.code),
                    "name": supplier.code,
                    "connector": supplier.connector,
                    "settings": settings,
                    "secret": secret,
                    "trust_factor": supplier.trust_factor,
                    "cap": supplier.cap,
                    "max_age_minutes": supplier.max_age_minutes,
                    "poll_interval_s": 3600,
                },
            )
            self.secrets[supplier.code] = secret
            for sku in supplied:
                self._call(
                    self.staff,
                    "post",
                    "supplier-products/",
                    {
                        "supplier": self.code(supplier.code),
                        "supplier_sku": f"{supplier.code}-{sku}",
                        "item": self.code(sku),
                        "units_per_pack": 1,
                    },
                )
        self.tokens = {}
        self.channel_sku: dict[tuple[str, str], str] = {}
        for channel in world.channels:
            self._call(
                self.staff,
                "post",
                "channels/",
                {
                    "code": self.code(channel.code),
                    "name": channel.code,
                    "kind": channel.kind,
                    "rate_per_s": 50,
                    "burst": 100,
                    "coefficient": channel.coefficient,
                    "buffer": channel.buffer,
                    "locations": [self.code(loc) for loc in channel.locations],
                },
            )
            for product in world.products:
                sku = f"{channel.code}-{product.code}"
                self._call(
                    self.staff,
                    "post",
                    "listings/",
                    {"channel": self.code(channel.code), "channel_sku": sku, "product": self.code(product.code)},
                )
                self.channel_sku[(channel.code, product.code)] = sku
            self.tokens[channel.code] = token_create(channel_code=self.code(channel.code))
        self.product_of = {v: k[1] for k, v in self.channel_sku.items()}
        for (sku, location), units in stream.opening.items():
            self._movement("receipt", location, sku, units, f"open-{sku}-{location}")
        for supplier in world.suppliers:  # a first good feed of every supplier
            self.feed(
                supplier.code,
                {sku: int(n * supplier.inflation) for (sku, s), n in world.supplier_real.items() if s == supplier.code},
                broken=False,
            )
        self._learn_rates(stream)
        self.at(stream.start_s)

    # --- safety stock -----------------------------------------------------------------------

    def _learn_rates(self, stream: Stream) -> None:
        """Demand Stockroom cannot refuse, per item, location and hour of day, as the forecast would have learnt it.

        Till sales at the stores, per hour of day; a supplier's sales elsewhere at its location
        (restocks do not count) as one all-day rate: they do not follow the shop's hours, and a
        per-hour rate learnt from the day being replayed would know which item sells when, which
        no forecast does. Both come in lumps of a few units, so the variance is the
        compound-Poisson one: the sum of squared quantities per hour.
        """
        units: dict[tuple[str, str, int], float] = defaultdict(float)
        squares: dict[tuple[str, str, int], float] = defaultdict(float)
        for event in stream.events:
            if event.kind == "pos" or (event.kind == "supplier_sale" and event.quantity > 0):
                hour = ALL_DAY if event.kind == "supplier_sale" else int(event.at // 3600) % 24
                key = (event.sku, event.location, hour)
                units[key] += event.quantity
                squares[key] += event.quantity**2
        covered = [0.0] * 24  # hours of each hour-of-day the run spans
        second = stream.start_s
        while second < stream.end_s:
            step = min(3600 - second % 3600, stream.end_s - second)
            covered[int(second // 3600) % 24] += step / 3600
            second += step
        self.covered = [*covered, sum(covered)]  # covered[ALL_DAY]: the run's length
        self.rates = {key: (n / self.covered[key[2]], squares[key] / self.covered[key[2]]) for key, n in units.items()}
        items = {i.sku: i.id for i in Item.objects.filter(sku__in=[self.code(s) for s in self.world.items])}
        suppliers = {s.code: s for s in self.world.suppliers}
        places = [*self.world.stores, *suppliers]
        location_ids = dict(Location.objects.filter(code__in=[self.code(p) for p in places]).values_list("code", "id"))
        supplied = {sku for sku, _ in self.world.supplier_real}
        self.pair_ids = {
            (sku, place): (items[self.code(sku)], location_ids[self.code(place)])
            for place in places
            for sku in self.world.items
            if place not in suppliers or sku in supplied
        }
        self.window_hours = {
            pair: suppliers[pair[1]].max_age_minutes / 60 if pair[1] in suppliers else self.exposure_hours
            for pair in self.pair_ids
        }
        self.at_supplier = {ids: pair[1] in suppliers for pair, ids in self.pair_ids.items()}
        self.sale_unit = {
            ids: 500 if self.world.item_units[sku] == "g" else 1 for (sku, _), ids in self.pair_ids.items()
        }

    def _safety_for_hour(self, hour: int) -> dict[tuple[int, int], int]:
        if self.safety_mode == "none":
            return dict.fromkeys(self.pair_ids.values(), 0)
        if self.safety_mode in ("fixed", "fixed-matched"):
            if self._fixed is None:
                self._fixed = self._fixed_safety(matched=self.safety_mode == "fixed-matched")
            return self._fixed
        return self._dynamic_safety(hour)

    def _dynamic_safety(self, hour: int) -> dict[tuple[int, int], int]:
        pairs = list(self.pair_ids.items())
        rates = [
            self.rates.get((sku, place, ALL_DAY if self.at_supplier[ids] else hour), (0.0, 0.0))
            for (sku, place), ids in pairs
        ]
        levels = safety_levels(
            mean_per_hour=[mean for mean, _ in rates],
            var_per_hour=[var for _, var in rates],
            window_hours=[self.window_hours[pair] for pair, _ in pairs],
            service_level=self.service_level,
        )
        return {ids: int(level) for (_, ids), level in zip(pairs, levels, strict=True)}

    def _held_units(self, values: dict[tuple[int, int], int]) -> list[int]:
        """Units these levels hold back, [stores, suppliers], in sale units (a 500 g pack counts
        once, so grams do not drown the pieces)."""
        held = [0, 0]
        for ids, value in values.items():
            held[self.at_supplier[ids]] += value // self.sale_unit[ids]
        return held

    def _fixed_safety(self, *, matched: bool) -> dict[tuple[int, int], int]:
        """One number all day: what each pair's busiest hour needs, or, matched, those numbers
        scaled down (stores and suppliers apart) to the units the dynamic levels hold back on
        average over the hours this run covers."""
        by_hour = [self._dynamic_safety(h) for h in range(24)]
        fixed = {ids: max(levels[ids] for levels in by_hour) for ids in self.pair_ids.values()}
        if not matched:
            return fixed
        dynamic = [0.0, 0.0]
        for hour, levels in enumerate(by_hour):
            for side, units in enumerate(self._held_units(levels)):
                dynamic[side] += self.covered[hour] * units
        flat = self._held_units(fixed)
        scale = [d / self.covered[ALL_DAY] / f if f else 0.0 for d, f in zip(dynamic, flat, strict=True)]
        return {ids: int(value * scale[self.at_supplier[ids]]) for ids, value in fixed.items()}

    def at(self, seconds: float) -> None:
        """Called as simulated time passes: the hourly jobs (safety stock, planner statistics)."""
        hour = int(seconds // 3600) % 24
        if hour != self._safety_hour:
            self._safety_hour = hour
            planner_statistics_refresh()  # an hour of writes comes in minutes here; stale plans would slow the day
            values = self._safety_for_hour(hour)
            safety_apply(values=values, reason="simulation hourly safety stock")
            self._hidden_now = self._held_units(values)
        self._hidden_total = [total + now for total, now in zip(self._hidden_total, self._hidden_now, strict=True)]
        self._hidden_ticks += 1

    def safety_hidden_units(self) -> tuple[int, int]:
        """Average units held back by safety stock over the run: at the stores, at the suppliers."""
        stores, suppliers = (round(total / max(1, self._hidden_ticks)) for total in self._hidden_total)
        return stores, suppliers

    def incidents(self) -> dict[str, int]:
        """Incidents this run opened for staff (the admin's work queue), by kind."""
        mine = Q(item__sku__startswith=f"{self.run}-") | Q(location__code__startswith=f"{self.run}-")
        return dict(Incident.objects.filter(mine).values("kind").annotate(n=Count("id")).values_list("kind", "n"))

    # --- what happens during the day --------------------------------------------------------

    def _movement(self, kind: str, location: str, sku: str, quantity: int, key: str) -> None:
        self._call(
            self.staff,
            "post",
            "stock/movements/",
            {
                "location": self.code(location),
                "item": self.code(sku),
                "kind": kind,
                "quantity": quantity,
                "idempotency_key": f"{self.run}-{key}",
            },
        )

    def attach(self, engine: Any) -> None:
        """The engine answers suppliers' order checks from their real stock."""
        self.engine = engine

    def _supplier_checks(self, order_id: int, allocation: list[tuple[str, str, int]]) -> bool:
        """The drop-ship order check: each supplier holding part of the order confirms or refuses it.

        In production a Celery task makes this call seconds after the reservation; here it runs
        at once. A refusal goes through the real service (release there, flag, incident) and the
        order is then cancelled: the shopper is told, nothing ships that the supplier lacks.
        """
        suppliers = {s.code for s in self.world.suppliers}
        wanted: dict[str, dict[str, int]] = defaultdict(dict)
        for sku, location, units in allocation:
            if location in suppliers:
                wanted[location][sku] = wanted[location].get(sku, 0) + units
        confirmed: list[str] = []
        for supplier, lines in sorted(wanted.items()):
            if self.engine.supplier_confirm(supplier, lines):
                confirmed.append(supplier)
                continue
            location_id = Location.objects.get(code=self.code(supplier)).pk
            order_supplier_refused(order_id=order_id, location_id=location_id, reason="out of stock at the supplier")
            self.engine.supplier_release([(s, c, u) for s, c, u in allocation if c in confirmed])
            return False
        return True

    def order(self, event: Event) -> Decision:
        channel = next(c for c in self.world.channels if c.code == event.channel)
        body = {
            "external_id": f"{self.run}-{event.key}",
            "mode": channel.mode,
            "hold_minutes": 240,
            "lines": [{"sku": self.channel_sku[(event.channel, event.product)], "quantity": event.quantity}],
        }
        response = self._call(
            self.tokens[event.channel],
            "post",
            "orders/",
            body,
            ok=(201, 409),
            **{"Idempotency-Key": f"{self.run}-{event.key}"},
        )
        if response.status_code == 409:
            return Decision(False)
        order_id = response.json()["id"]
        self._orders[event.key] = (order_id, event.channel)
        allocation = [
            (sku.removeprefix(f"{self.run}-"), loc.removeprefix(f"{self.run}-"), qty)
            for sku, loc, qty in Reservation.objects.filter(line__order_id=order_id).values_list(
                "item__sku", "location__code", "quantity"
            )
        ]
        unallocated = sum(OrderLine.objects.filter(order_id=order_id).values_list("unallocated_quantity", flat=True))
        if not self._supplier_checks(order_id, allocation):
            if channel.mode == "reserve":
                # The shopper is still at checkout (a hold): told no before paying.
                self._order_action(event.key, "cancel")
                self._orders.pop(event.key, None)
                return Decision(False)
            # A marketplace already sold it: the order stands, flagged, and cannot fully ship.
            suppliers = {s.code for s in self.world.suppliers}
            kept = [(s, loc, u) for s, loc, u in allocation if loc not in suppliers]
            return Decision(True, kept, unallocated, supplier_refused=event.quantity)
        return Decision(True, allocation, unallocated)

    def _order_action(self, key: str, action: str) -> int:
        order_id, channel = self._orders[key]
        token = self.tokens[channel]
        response = self._call(
            token,
            "post",
            f"orders/{order_id}/{action}/",
            {},
            ok=(200, 201, 409),
            **{"Idempotency-Key": f"{self.run}-{key}-{action}"},
        )
        return int(response.status_code)

    def fulfil(self, key: str) -> None:
        """Ship the order; if tills took its units off the shelf, Stockroom refuses and staff cancel it."""
        if self._order_action(key, "fulfil") == 409:
            self._order_action(key, "cancel")
        self._orders.pop(key, None)

    def cancel(self, key: str) -> None:
        self._order_action(key, "cancel")
        self._orders.pop(key, None)

    def pos_sale(self, event: Event) -> None:
        self._movement("pos_sale", event.location, event.sku, event.quantity, f"pos-{event.seq}")

    def receipt(self, event: Event) -> None:
        self._movement("receipt", event.location, event.sku, event.quantity, f"rcv-{event.seq}")

    def feed(self, supplier: str, reported: dict[str, int], broken: bool) -> None:
        spec = next(s for s in self.world.suppliers if s.code == supplier)
        now = datetime.now(UTC).isoformat()
        if spec.connector == "webhook":
            items = [
                {"supplier_sku": f"{supplier}-{sku}", "quantity": n, "updated_at": now} for sku, n in reported.items()
            ]
            body = json.dumps({"items": items}).encode()
            stamp = str(int(time.time()))
            signature = webhook_signature(secret=self.secrets[supplier], timestamp=stamp, body=body)
            response = self.transport.request(
                "post",
                f"/api/v1/suppliers/{self.code(supplier)}/webhook/",
                body=body,
                headers={"X-Timestamp": stamp, "X-Signature": signature},
            )
            if response.status_code >= 300:
                raise SimulationError(f"webhook -> {response.status_code}: {response.content[:300]!r}")
            return
        path = self.drop_dirs[supplier] / f"feed-{time.monotonic_ns()}.csv"
        if broken:
            path.write_bytes(b"supplier_sku,quantity,updated_at\n" + b"\x00garbage;;;\n" * max(3, len(reported)))
        else:
            lines = [f"{supplier}-{sku},{n},{now}" for sku, n in reported.items()]
            path.write_text("supplier_sku,quantity,updated_at\n" + "\n".join(lines) + "\n")
        try:
            call_command(
                "import_feed", "--supplier", self.code(supplier), str(path), stdout=io.StringIO(), stderr=io.StringIO()
            )
        except SystemExit:
            pass  # a refused feed exits non-zero; the last good data stays, which is the point
        except Exception as err:  # the command reports a refused run as a CommandError
            if "refused" not in str(err).lower():
                raise

    def displays(self) -> dict[tuple[str, str], int]:
        shown = {}
        for channel in self.world.channels:
            if channel.mode != "import":
                continue
            skus = [self.channel_sku[(channel.code, p.code)] for p in self.world.products]
            query = "&".join(f"sku={s}" for s in skus)
            results = self._call(self.tokens[channel.code], "get", f"availability/?{query}").json()["results"]
            for row in results:
                shown[(channel.code, self.product_of[row["sku"]])] = int(row["available"])
        return shown
