"""The simulated merchant: stores, a warehouse, two drop-ship suppliers, channels, products."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ProductSpec:
    code: str
    kind: str
    components: tuple[tuple[str, int], ...]  # (item sku, base units)


@dataclass(frozen=True)
class ChannelSpec:
    code: str
    kind: str
    mode: str  # "reserve": asks before selling; "import": sells on its own display, tells us after
    locations: tuple[str, ...]
    coefficient: str
    buffer: int
    share: float  # share of online orders


@dataclass(frozen=True)
class SupplierSpec:
    code: str
    connector: str
    inflation: float  # reported = real * inflation
    trust_factor: str
    cap: int
    max_age_minutes: int
    late_probability: float  # a feed that does not arrive
    broken_probability: float  # a feed that arrives as garbage


@dataclass
class World:
    items: list[str]
    item_units: dict[str, str]
    products: list[ProductSpec]
    stores: tuple[str, ...] = ("S1", "S2")
    warehouse: str = "WH"
    suppliers: tuple[SupplierSpec, ...] = ()
    channels: tuple[ChannelSpec, ...] = ()
    supplier_real: dict[tuple[str, str], int] = field(default_factory=dict)  # (sku, supplier) -> real stock

    @property
    def locations(self) -> tuple[str, ...]:
        return (*self.stores, self.warehouse, *(s.code for s in self.suppliers))


def build_world(*, seed: int, items: int = 40) -> World:
    """A catalog with standard, multipack, weighted and bundle products that share items."""
    rng = np.random.default_rng(seed)
    skus = [f"SIM-{n:03d}" for n in range(items)]
    units = {sku: ("g" if n % 10 == 9 else "piece") for n, sku in enumerate(skus)}
    products = [ProductSpec(sku, "standard", ((sku, 1),)) for sku in skus if units[sku] == "piece"]
    products += [ProductSpec(f"{sku}-500G", "weighted", ((sku, 500),)) for sku in skus if units[sku] == "g"]
    pieces = [sku for sku in skus if units[sku] == "piece"]
    products += [ProductSpec(f"{sku}-3PK", "multipack", ((sku, 3),)) for sku in pieces[:6]]
    for n in range(6):
        a, b, c = rng.choice(pieces, size=3, replace=False)
        products.append(ProductSpec(f"SIM-KIT-{n}", "bundle", ((str(a), 1), (str(b), 1), (str(c), 2))))
    suppliers = (
        SupplierSpec(
            "DROPA",
            "webhook",
            inflation=3.0,
            trust_factor="0.300",
            cap=40,
            max_age_minutes=90,
            late_probability=0.05,
            broken_probability=0.0,
        ),
        SupplierSpec(
            "DROPB",
            "folder",
            inflation=1.0,
            trust_factor="0.800",
            cap=60,
            max_age_minutes=180,
            late_probability=0.25,
            broken_probability=0.1,
        ),
    )
    channels = (
        ChannelSpec("simshop", "webshop", "reserve", ("WH", "S1", "S2"), "1.000", 0, 0.45),
        ChannelSpec("simmarket", "marketplace", "import", ("WH", "DROPA", "DROPB"), "0.800", 2, 0.40),
        ChannelSpec("simdeliver", "delivery", "import", ("S1",), "0.500", 1, 0.15),
    )
    supplier_real = {(sku, s.code): int(rng.integers(0, 30)) for s in suppliers for sku in pieces}
    return World(skus, units, products, suppliers=suppliers, channels=channels, supplier_real=supplier_real)
