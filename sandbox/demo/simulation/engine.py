"""Replays a stream against one system while keeping the physical truth beside it.

The engine owns the real world: what is on each shelf, what each supplier really has, what
each marketplace shows. A system (Stockroom or the naive baseline) only decides whether to
take an order and where to take it from; the engine then ships from the shelves and counts
every unit that was promised but could not be shipped, and why.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from django.db import close_old_connections, connections

from sandbox.demo.simulation.events import Event, Stream
from sandbox.demo.simulation.world import World

Allocation = list[tuple[str, str, int]]  # (sku, location, base units)
# What Stockroom promises never happens: books that disagree with the shelves (concurrency) and
# supplier stock that was not there (supplier data). The other causes are measured and kept small.
GUARANTEED = ("warehouse", "supplier")
CAUSES = {
    "store": "store shelf empty at shipping (till sales took it)",
    "warehouse": "warehouse shelf empty at shipping (books were wrong)",
    "supplier": "supplier had less than it reported",
    "unallocated": "marketplace sold before the push arrived (sync latency)",
}


@dataclass
class Decision:
    accepted: bool
    allocation: Allocation = field(default_factory=list)
    unallocated: int = 0  # product units accepted that the system itself knew it could not cover
    supplier_refused: int = 0  # product units sold (by a marketplace) that a drop-ship supplier then refused


class System(Protocol):
    name: str
    display_interval_s: float  # how often the marketplaces' shown quantities are refreshed

    def setup(self, world: World, stream: Stream) -> None: ...
    def order(self, event: Event) -> Decision: ...
    def fulfil(self, key: str) -> None: ...
    def cancel(self, key: str) -> None: ...
    def pos_sale(self, event: Event) -> None: ...
    def receipt(self, event: Event) -> None: ...
    def feed(self, supplier: str, reported: dict[str, int], broken: bool) -> None: ...
    def displays(self) -> dict[tuple[str, str], int]: ...  # (channel, product) -> shown quantity
    def safety_hidden_units(self) -> tuple[int, int]: ...  # average held back (stores, suppliers)
    def incidents(self) -> dict[str, int]: ...  # incidents the system opened for staff, by kind
    def at(self, seconds: float) -> None: ...  # simulated time has reached this point


@dataclass
class Outcome:
    system: str
    online_orders: int = 0
    accepted: int = 0
    refused: int = 0  # refused or shown as sold out
    oversold_orders: int = 0
    oversold_units: Counter = field(default_factory=Counter)  # cause -> units
    store_sales: int = 0
    store_sales_lost: int = 0
    safety_hidden_units: int = 0  # at the stores
    supplier_safety_hidden_units: int = 0  # at drop-ship suppliers
    refused_with_stock: int = 0  # online orders turned away although the shelves could cover them
    sync_interval_s: float = 0.0  # how often what channels show is brought up to date
    incidents: Counter = field(default_factory=Counter)  # kind -> incidents opened for staff
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (hour, cumulative oversold units)
    wall_seconds: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def oversold_total(self) -> int:
        return sum(self.oversold_units.values())

    @property
    def oversell_rate(self) -> float:
        return self.oversold_orders / self.accepted if self.accepted else 0.0

    @property
    def till_shortfall_rate(self) -> float:
        """Units that till sales took from promised online orders, per online order offered."""
        return self.oversold_units[CAUSES["store"]] / self.online_orders if self.online_orders else 0.0


class Engine:
    def __init__(
        self,
        *,
        world: World,
        stream: Stream,
        system: System,
        tick_s: float = 10.0,
        threads: int = 8,
        progress: Callable[[float, Outcome], None] | None = None,
    ) -> None:
        self.world, self.stream, self.system = world, stream, system
        self.tick_s, self.threads, self.progress = tick_s, threads, progress
        self.shelf: dict[tuple[str, str], int] = defaultdict(int, stream.opening)
        for (sku, supplier), units in world.supplier_real.items():
            self.shelf[(sku, supplier)] = units
        self.mode = {c.code: c.mode for c in world.channels}
        self.kind = {loc: "store" for loc in world.stores} | {world.warehouse: "warehouse"}
        self.kind |= {s.code: "supplier" for s in world.suppliers}
        self.inflation = {s.code: s.inflation for s in world.suppliers}
        self.products = {p.code: p for p in world.products}
        self.promised: dict[str, Decision] = {}
        # Units a supplier confirmed to us (its order check) and keeps aside until shipped.
        self.ring_fenced: Counter = Counter()
        self._supplier_lock = threading.Lock()
        attach = getattr(system, "attach", None)
        if attach is not None:
            attach(self)
        self.shown: dict[tuple[str, str], int] = {}
        self.outcome = Outcome(system=system.name, online_orders=stream.online_orders)

    # --- the real world -----------------------------------------------------------------

    def supplier_confirm(self, supplier: str, wanted: dict[str, int]) -> bool:
        """A supplier's answer to an order check: yes (and keep the goods aside) only if it has them."""
        with self._supplier_lock:
            if any(self.shelf[(sku, supplier)] - self.ring_fenced[(sku, supplier)] < n for sku, n in wanted.items()):
                return False
            for sku, n in wanted.items():
                self.ring_fenced[(sku, supplier)] += n
            return True

    def supplier_release(self, allocation: Allocation) -> None:
        with self._supplier_lock:
            for sku, location, units in allocation:
                if self.kind[location] == "supplier":
                    key = (sku, location)
                    self.ring_fenced[key] = max(0, self.ring_fenced[key] - units)

    def _ship(self, decision: Decision, order: Event) -> None:
        """Ship from the shelves; count product units that could not ship, with their cause."""
        per_unit = dict(self.products[order.product].components)
        short_by_cause: Counter = Counter()
        self.supplier_release(decision.allocation)
        for sku, location, units in decision.allocation:
            taken = min(max(0, self.shelf[(sku, location)]), units)
            self.shelf[(sku, location)] -= taken
            if units > taken:
                cause = CAUSES[self.kind[location]]
                missing = -(-(units - taken) // per_unit[sku])  # whole products that cannot ship
                short_by_cause[cause] = max(short_by_cause[cause], missing)
        if decision.unallocated:
            short_by_cause[CAUSES["unallocated"]] += decision.unallocated
        if decision.supplier_refused:
            short_by_cause[CAUSES["supplier"]] += decision.supplier_refused
        if short_by_cause:
            self.outcome.oversold_orders += 1
            self.outcome.oversold_units.update(short_by_cause)

    def _could_cover(self, event: Event) -> bool:
        """Could the shelves of this channel's locations have covered the order? (for lost sales)"""
        channel = next(c for c in self.world.channels if c.code == event.channel)
        for location in channel.locations:
            if all(
                self.shelf[(sku, location)] >= units * event.quantity
                for sku, units in self.products[event.product].components
            ):
                return True
        return False

    # --- the run -------------------------------------------------------------------------

    def run(self) -> Outcome:
        started = time.monotonic()
        self.system.setup(self.world, self.stream)
        self.shown = self.system.displays()
        orders: dict[str, Event] = {}
        events = self.stream.events
        index, tick_end = 0, self.stream.start_s + self.tick_s
        last_refresh = self.stream.start_s
        with ThreadPoolExecutor(max_workers=self.threads, initializer=close_old_connections) as pool:
            while index < len(events):
                batch = []
                while index < len(events) and events[index].at < tick_end:
                    batch.append(events[index])
                    index += 1
                self.system.at(tick_end - self.tick_s)
                self._tick(batch, orders, pool)
                if tick_end - last_refresh >= self.system.display_interval_s:
                    self.shown = self.system.displays()
                    last_refresh = tick_end
                hour = (tick_end - self.stream.start_s) / 3600
                if not self.outcome.timeline or hour - self.outcome.timeline[-1][0] >= 0.25:
                    self.outcome.timeline.append((hour, self.outcome.oversold_total))
                    if self.progress:
                        self.progress(hour, self.outcome)
                tick_end += self.tick_s
            self._close_connections(pool)
        for key, decision in list(self.promised.items()):  # the day's last parcels leave too
            self._ship(decision, orders[key])
        self.outcome.timeline.append((self.stream.hours, self.outcome.oversold_total))
        self.outcome.safety_hidden_units, self.outcome.supplier_safety_hidden_units = self.system.safety_hidden_units()
        self.outcome.sync_interval_s = self.system.display_interval_s
        self.outcome.incidents = Counter(self.system.incidents())
        self.outcome.wall_seconds = time.monotonic() - started
        return self.outcome

    def _close_connections(self, pool: ThreadPoolExecutor) -> None:
        """Every worker thread closes its own database connections (the barrier gives each one task)."""
        barrier = threading.Barrier(self.threads)

        def close() -> None:
            connections.close_all()
            barrier.wait(timeout=60)

        for future in [pool.submit(close) for _ in range(self.threads)]:
            future.result()

    def _tick(self, batch: list[Event], orders: dict[str, Event], pool: ThreadPoolExecutor) -> None:
        # Things that happen one after the other: deliveries, feeds, suppliers' own sales.
        concurrent: list[Event] = []
        for event in batch:
            if event.kind == "receipt":
                self.shelf[(event.sku, event.location)] += event.quantity
                self.system.receipt(event)
            elif event.kind == "supplier_sale":
                key = (event.sku, event.location)
                with self._supplier_lock:  # what it confirmed to us is not for sale elsewhere
                    self.shelf[key] = max(min(self.ring_fenced[key], self.shelf[key]), self.shelf[key] - event.quantity)
            elif event.kind == "feed":
                reported = {
                    sku: int(units * self.inflation[event.location])
                    for (sku, supplier), units in sorted(self.shelf.items())
                    if supplier == event.location
                }
                self.system.feed(event.location, reported, event.broken)
            elif event.kind in ("order", "pos"):
                concurrent.append(event)
        # Shoppers online and at the tills act at the same moment, on separate connections.
        decisions: list[tuple[Event, object]] = []
        for event in concurrent:
            if event.kind == "pos":
                if self.shelf[(event.sku, event.location)] < event.quantity:
                    self.outcome.store_sales_lost += 1  # nothing on the shelf: the customer leaves
                    continue
                self.shelf[(event.sku, event.location)] -= event.quantity
                self.outcome.store_sales += 1
                decisions.append((event, pool.submit(self.system.pos_sale, event)))
            else:
                if self.mode[event.channel] == "import":
                    shown = self.shown.get((event.channel, event.product), 0)
                    if shown < event.quantity:
                        self.outcome.refused += 1
                        self.outcome.refused_with_stock += self._could_cover(event)
                        continue
                    self.shown[(event.channel, event.product)] = shown - event.quantity
                decisions.append((event, pool.submit(self.system.order, event)))
        for event, future in decisions:
            result = future.result()  # type: ignore[attr-defined]
            if event.kind != "order":
                continue
            if result.accepted:
                self.outcome.accepted += 1
                self.promised[event.key] = result
                orders[event.key] = event
            else:
                self.outcome.refused += 1
                self.outcome.refused_with_stock += self._could_cover(event)
        # Later in the day: parcels leave the warehouse, or orders are cancelled (told in parallel).
        told = []
        for event in batch:
            if event.kind == "fulfil" and event.key in self.promised:
                self._ship(self.promised.pop(event.key), orders[event.key])
                told.append(pool.submit(self.system.fulfil, event.key))
            elif event.kind == "cancel" and event.key in self.promised:
                self.supplier_release(self.promised.pop(event.key).allocation)
                told.append(pool.submit(self.system.cancel, event.key))
        for future in told:
            future.result()
