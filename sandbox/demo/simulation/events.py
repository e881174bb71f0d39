"""A seeded stream of what happens in a trading day, in simulated seconds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sandbox.demo.simulation.world import World

HOURLY_PROFILE = np.array(
    [
        0.2,
        0.1,
        0.1,
        0.1,
        0.1,
        0.2,
        0.4,
        0.7,
        1.0,
        1.2,
        1.3,
        1.4,
        1.5,
        1.4,
        1.3,
        1.3,
        1.4,
        1.6,
        1.8,
        1.9,
        1.7,
        1.2,
        0.8,
        0.4,
    ]
)
STORE_HOURS = np.array([0] * 8 + [1] * 12 + [0] * 4)


@dataclass(frozen=True, order=True)
class Event:
    at: float  # simulated seconds since the start of the day
    seq: int
    kind: str  # order | fulfil | cancel | pos | receipt | feed | supplier_sale
    channel: str = ""
    product: str = ""
    sku: str = ""
    location: str = ""
    quantity: int = 0
    key: str = ""
    reported: tuple[tuple[str, int], ...] = ()
    broken: bool = False


@dataclass(frozen=True)
class Stream:
    events: list[Event]
    hours: float
    online_orders: int
    opening: dict[tuple[str, str], int]  # (sku, location) -> units on the shelf at the start
    start_s: float = 0.0  # the run covers [start_s, start_s + hours * 3600) seconds since midnight

    @property
    def end_s(self) -> float:
        return self.start_s + self.hours * 3600


def _times(rng: np.random.Generator, count: int, start: float, hours: float, profile: np.ndarray) -> np.ndarray:
    """Arrival times (seconds since midnight) following an hour-of-day profile, within the run."""
    first = int(start)
    slots = np.arange(first, int(np.ceil(start + hours)))
    weights = profile[slots % 24].astype(float)
    weights[0] *= 1 - (start - first)
    weights[-1] *= (start + hours) - slots[-1] if (start + hours) % 1 else 1.0
    if weights.sum() <= 0:
        return np.array([])
    chosen = rng.choice(slots, size=count, p=weights / weights.sum())
    times = (chosen + rng.random(count)) * 3600.0
    return np.clip(np.sort(times), start * 3600.0, (start + hours) * 3600.0 - 1e-3)


def _profile_share(profile: np.ndarray, window: tuple[float, float], start: float, hours: float) -> float:
    """The share of the run's expected orders that fall in ``window`` (hours since midnight)."""

    def weight(a: float, b: float) -> float:
        hours_of_day = np.arange(int(np.floor(a)), int(np.ceil(b)))
        overlap = np.minimum(hours_of_day + 1, b) - np.maximum(hours_of_day, a)
        return float((profile[hours_of_day % 24] * np.clip(overlap, 0, None)).sum())

    total = weight(start, start + hours)
    return weight(*window) / total if total else 0.0


def generate(world: World, *, seed: int, hours: float, orders: int, start_hour: float = 0.0) -> Stream:
    """Orders spread over channels and products (a few are popular), store sales, receipts, feeds."""
    rng = np.random.default_rng(seed + 1)
    events: list[Event] = []
    seq = iter(range(10**9))

    products = world.products
    popularity = 1.0 / np.arange(1, len(products) + 1) ** 0.8
    popularity = rng.permutation(popularity / popularity.sum())
    shares = np.array([c.share for c in world.channels])
    end = (start_hour + hours) * 3600
    order_times = _times(rng, orders, start_hour, hours, HOURLY_PROFILE)
    channel_of = rng.choice(len(world.channels), size=orders, p=shares / shares.sum())
    product_of = rng.choice(len(products), size=orders, p=popularity)
    quantity_of = rng.choice([1, 2, 3], size=orders, p=[0.8, 0.15, 0.05])
    fate = rng.random(orders)
    for n in range(orders):
        channel = world.channels[channel_of[n]]
        key = f"o{n}"
        at = float(order_times[n])
        events.append(
            Event(
                at,
                next(seq),
                "order",
                channel=channel.code,
                product=products[product_of[n]].code,
                quantity=int(quantity_of[n]),
                key=key,
            )
        )
        later = at + float(rng.uniform(15, 120)) * 60
        if later < end:
            kind = "cancel" if fate[n] < 0.05 else "fulfil"
            events.append(Event(later, next(seq), kind, channel=channel.code, key=key))

    # Online demand per item over the run, in base units, sizes shelves, store sales and receipts.
    demand: dict[str, float] = dict.fromkeys(world.items, 0.0)
    for product, share in zip(products, popularity, strict=True):
        for sku, units in product.components:
            demand[sku] += share * orders * 1.3 * units
    # The warehouse is stocked for the hours until its next delivery, from the demand expected in
    # them, never quite enough on average (forecasts miss, suppliers short-ship): items run out
    # before some deliveries, and the channels must stop selling in time.
    step = 3 if hours >= 6 else max(hours / 4, 0.05)
    deliveries = list(start_hour + np.arange(step, hours, step))
    windows = list(zip([start_hour, *deliveries], [*deliveries, start_hour + hours], strict=True))
    served = sum(c.share for c in world.channels if c.locations[0] == world.warehouse) / shares.sum()
    window_shares = [served * _profile_share(HOURLY_PROFILE, window, start_hour, hours) for window in windows]

    def warehouse_supply(sku: str, window_share: float) -> int:
        return int(demand[sku] * window_share * rng.uniform(0.75, 1.1))

    opening: dict[tuple[str, str], int] = {}
    for sku in world.items:
        opening[(sku, world.warehouse)] = warehouse_supply(sku, window_shares[0]) + 2
        for store in world.stores:
            opening[(sku, store)] = int(demand[sku] * 0.08 * rng.uniform(0.6, 1.2)) + 1

    # Store sales: about a third of online volume, only while stores are open.
    pos_count = int(orders * 0.35)
    pos_times = _times(rng, pos_count, start_hour, hours, HOURLY_PROFILE * STORE_HOURS)
    pos_count = len(pos_times)
    weights = np.array([demand[s] / (500 if world.item_units[s] == "g" else 1) for s in world.items])
    pos_items = rng.choice(len(world.items), size=pos_count, p=weights / weights.sum())
    for n in range(pos_count):
        sku = world.items[pos_items[n]]
        scale = 500 if world.item_units[sku] == "g" else 1
        events.append(
            Event(
                float(pos_times[n]),
                next(seq),
                "pos",
                sku=sku,
                location=str(rng.choice(world.stores)),
                quantity=int(rng.choice([1, 1, 1, 2])) * scale,
            )
        )

    # Deliveries every hour or three: the warehouse for the window they open, the stores a share.
    rounds = max(1, int(hours / step))
    for hour, window_share in zip(deliveries, window_shares[1:], strict=True):
        for sku in world.items:
            events.append(
                Event(
                    float(hour * 3600),
                    next(seq),
                    "receipt",
                    sku=sku,
                    location=world.warehouse,
                    quantity=max(1, warehouse_supply(sku, window_share)),
                )
            )
            for store in world.stores:
                events.append(
                    Event(
                        float(hour * 3600 + 1),
                        next(seq),
                        "receipt",
                        sku=sku,
                        location=store,
                        quantity=max(1, int(demand[sku] * 0.25 / rounds * rng.uniform(0.7, 1.1))),
                    )
                )

    # Suppliers sell elsewhere all day; their feeds come every 30 minutes, when they come.
    supplied = sorted({sku for sku, _ in world.supplier_real})
    for supplier in world.suppliers:
        for minute in start_hour * 60 + np.arange(5, hours * 60, 7):
            sku = str(rng.choice(supplied))
            # Mostly sales elsewhere; now and then a restock (a negative sale).
            quantity = int(rng.integers(1, 4)) if rng.random() < 0.85 else -int(rng.integers(5, 15))
            events.append(
                Event(
                    float(minute * 60), next(seq), "supplier_sale", sku=sku, location=supplier.code, quantity=quantity
                )
            )
        for n, minute in enumerate(start_hour * 60 + np.arange(0, hours * 60, 30)):
            if n and rng.random() < supplier.late_probability:
                continue  # late: this feed never arrives
            events.append(
                Event(
                    float(minute * 60 + 2),
                    next(seq),
                    "feed",
                    location=supplier.code,
                    broken=bool(n and rng.random() < supplier.broken_probability),
                )
            )
    events.sort()
    return Stream(events=events, hours=hours, online_orders=orders, opening=opening, start_s=start_hour * 3600)
