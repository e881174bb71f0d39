"""A Shopify shop with an existing catalog, for going-live tests, the demo and the discovery bench.

``seed_catalog(fake, 2000)`` fills the fake with 2,000 variants (products of up to four variants) at two
locations with live quantities: by default 1,800 clean ones (tracked, a SKU of their own, stocked at every
location) and 50 of each problem class a merchant's shop has: untracked, without SKU, a SKU two variants
share (25 SKUs, 50 variants), stocked at the first location only. What went where is returned, so a test
can build Stockroom's side (the products of the clean SKUs) and know what the link must report.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sandbox.fakes.shopify.store import ShopifyFake, gid

SIZES = ("S", "M", "L", "XL")


@dataclass
class SeededCatalog:
    locations: list[str]  # location GIDs, the fake's main location first
    clean: dict[str, str] = field(default_factory=dict)  # SKU -> inventory item GID
    untracked: dict[str, str] = field(default_factory=dict)
    no_sku: list[str] = field(default_factory=list)  # inventory item GIDs
    duplicates: dict[str, list[str]] = field(default_factory=dict)  # SKU -> its two inventory item GIDs
    not_stocked: dict[str, str] = field(default_factory=dict)  # stocked at locations[0] only
    quantities: dict[str, dict[str, int]] = field(default_factory=dict)  # item GID -> location GID -> available

    @property
    def total(self) -> int:
        return (
            len(self.clean)
            + len(self.untracked)
            + len(self.no_sku)
            + sum(len(v) for v in self.duplicates.values())
            + len(self.not_stocked)
        )


def seed_catalog(
    fake: ShopifyFake,
    total: int = 2000,
    *,
    locations: int = 2,
    untracked: int = 50,
    no_sku: int = 50,
    duplicates: int = 50,
    not_stocked: int = 50,
    prefix: str = "SKU",
    seed: int = 24,
) -> SeededCatalog:
    """Fill ``fake`` with ``total`` variants; the problem classes take their counts, the rest are clean.
    ``duplicates`` is a number of variants (two per shared SKU). Quantities are 0-40, some 0."""
    problems = untracked + no_sku + duplicates + not_stocked
    if problems > total or duplicates % 2:
        raise ValueError("the problem classes must fit in total, and duplicates must be even")
    rng = random.Random(seed)
    places = [fake.location_id]
    names = ("Warehouse", "Store 1", "Store 2", "Store 3", "Store 4", "Store 5")
    while len(places) < locations:
        places.append(gid("Location", fake.add_location(names[len(places) % len(names)])))
    catalog = SeededCatalog(locations=places)
    kinds = (
        ["clean"] * (total - problems)
        + ["untracked"] * untracked
        + ["no_sku"] * no_sku
        + ["duplicate"] * duplicates
        + ["not_stocked"] * not_stocked
    )
    product: int | None = None
    for number, kind in enumerate(kinds):
        size = SIZES[number % len(SIZES)]
        if number % len(SIZES) == 0:
            product = fake.add_product(f"{prefix.title()} product {number // len(SIZES) + 1:05d}")
        sku = f"{prefix}-{number:06d}"
        if kind == "duplicate":
            sku = f"{prefix}-DUP-{number // 2:06d}"
        elif kind == "no_sku":
            sku = ""
        stocked_at = places[:1] if kind == "not_stocked" else places
        quantities = {place: rng.choice((0, rng.randint(1, 40), rng.randint(1, 40))) for place in stocked_at}
        if kind == "untracked":  # Shopify counts nothing for it: its levels read 0
            quantities = dict.fromkeys(stocked_at, 0)
        item = fake.add_item(sku, quantities=quantities, tracked=kind != "untracked", title=size, product_id=product)
        catalog.quantities[item] = quantities
        if kind == "clean":
            catalog.clean[sku] = item
        elif kind == "untracked":
            catalog.untracked[sku] = item
        elif kind == "no_sku":
            catalog.no_sku.append(item)
        elif kind == "duplicate":
            catalog.duplicates.setdefault(sku, []).append(item)
        else:
            catalog.not_stocked[sku] = item
    return catalog
