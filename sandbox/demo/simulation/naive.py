"""The approach before Stockroom: a full sync every few minutes, check-then-decrement, no locks.

It runs on PostgreSQL too (its own table), with the same threads as Stockroom, so that its
lost updates are real ones: two sessions read the same number and both write back their
own result. Supplier numbers are taken as reported, however old or inflated.
"""

from __future__ import annotations

import uuid

from django.db import connection

from sandbox.demo.models import NaiveStock
from sandbox.demo.simulation.engine import Decision
from sandbox.demo.simulation.events import Event, Stream
from sandbox.demo.simulation.world import World


class NaiveSystem:
    name = "naive baseline"

    def __init__(self, *, sync_minutes: float = 15.0) -> None:
        self.display_interval_s = sync_minutes * 60
        self.run_id = uuid.uuid4().hex[:12]
        self.taken: dict[str, list[tuple[str, str, int]]] = {}

    def incidents(self) -> dict[str, int]:
        return {}  # nobody is told: the naive shop finds out from angry customers

    def setup(self, world: World, stream: Stream) -> None:
        self.world = world
        self.channels = {c.code: c for c in world.channels}
        self.products = {p.code: p for p in world.products}
        rows = [
            NaiveStock(run=self.run_id, sku=sku, location=loc, quantity=n) for (sku, loc), n in stream.opening.items()
        ]
        rows += [
            NaiveStock(run=self.run_id, sku=sku, location=s.code, quantity=0)
            for s in world.suppliers
            for sku in world.items
        ]
        NaiveStock.objects.filter(run=self.run_id).delete()
        NaiveStock.objects.bulk_create(rows)

    # Check-then-decrement: a read, a decision in Python, a blind write of the computed value.
    def _read(self, sku: str, location: str) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT quantity FROM demo_naivestock WHERE run = %s AND sku = %s AND location = %s",
                [self.run_id, sku, location],
            )
            row = cursor.fetchone()
        return int(row[0]) if row else 0

    def _write(self, sku: str, location: str, quantity: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE demo_naivestock SET quantity = %s WHERE run = %s AND sku = %s AND location = %s",
                [quantity, self.run_id, sku, location],
            )

    def order(self, event: Event) -> Decision:
        channel = self.channels[event.channel]
        product = self.products[event.product]
        for location in channel.locations:
            levels = {sku: self._read(sku, location) for sku, _ in product.components}
            needed = {sku: units * event.quantity for sku, units in product.components}
            if all(levels[sku] >= needed[sku] for sku in needed) or (
                channel.mode == "import" and location == channel.locations[-1]
            ):
                for sku in needed:
                    self._write(sku, location, levels[sku] - needed[sku])
                allocation = [(sku, location, n) for sku, n in needed.items()]
                self.taken[event.key] = allocation
                return Decision(True, allocation)
        return Decision(False)

    def fulfil(self, key: str) -> None:
        """Stock was already taken off at order time."""
        self.taken.pop(key, None)

    def cancel(self, key: str) -> None:
        for sku, location, units in self.taken.pop(key, []):
            self._write(sku, location, self._read(sku, location) + units)

    def pos_sale(self, event: Event) -> None:
        self._write(event.sku, event.location, self._read(event.sku, event.location) - event.quantity)

    def receipt(self, event: Event) -> None:
        self._write(event.sku, event.location, self._read(event.sku, event.location) + event.quantity)

    def feed(self, supplier: str, reported: dict[str, int], broken: bool) -> None:
        if broken:
            return  # a garbage file fails to parse; yesterday's numbers stay, forever
        for sku, quantity in reported.items():
            self._write(sku, supplier, quantity)

    def displays(self) -> dict[tuple[str, str], int]:
        """The scheduled full sync: every listing gets the summed stock, no buffer, no staleness rule."""
        stock = {(r.sku, r.location): r.quantity for r in NaiveStock.objects.filter(run=self.run_id)}
        shown = {}
        for channel in self.world.channels:
            for product in self.world.products:
                shown[(channel.code, product.code)] = sum(
                    max(0, min(stock.get((sku, loc), 0) // units for sku, units in product.components))
                    for loc in channel.locations
                )
        return shown

    def safety_hidden_units(self) -> tuple[int, int]:
        return (0, 0)

    def at(self, seconds: float) -> None:
        """The baseline has no scheduled jobs besides its full sync."""

    def cleanup(self) -> None:
        NaiveStock.objects.filter(run=self.run_id).delete()
