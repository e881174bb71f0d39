"""How a quantity reads to a person: in its item's base unit, with the unit's symbol.

One rule everywhere (levels, receipts, transfers, counts, charts, reorder): a quantity is shown
in the unit it is counted and typed in, the item's base unit (``Item.Unit``), with a thousands
separator: ``66 pcs``, ``17,250 g``, ``15,000 ml``. What a page shows is then exactly what a clerk
types on the receiving, counting or transfer forms, with no rounding. Sums never add different
units: ``totals_text`` groups them per unit ("30 pcs, 2,500 g").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# (one, several): "1 pc", "66 pcs"; grams and millilitres read the same either way.
SYMBOLS: dict[str, tuple[str, str]] = {"piece": ("pc", "pcs"), "g": ("g", "g"), "ml": ("ml", "ml")}
# The order in which a total lists its units.
UNIT_ORDER = ("piece", "g", "ml")


def unit_symbol(unit: str, value: int | float = 2) -> str:
    """The symbol of a base unit as it follows ``value`` ("pc" for exactly one piece, else "pcs")."""
    one, several = SYMBOLS.get(unit, (unit, unit))
    return one if abs(value) == 1 else several


def quantity_text(value: int | float | None, unit: str, *, signed: bool = False) -> str:
    """``17,250 g``, ``66 pcs``, ``+3 pcs`` (signed), a dash for no value."""
    if value is None:
        return "\N{EN DASH}"
    number = f"{value:+,}" if signed else f"{value:,}"
    return f"{number} {unit_symbol(unit, value)}"


def totals_by_unit(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Sum (unit, quantity) pairs per unit."""
    totals: dict[str, int] = {}
    for unit, value in pairs:
        totals[unit] = totals.get(unit, 0) + int(value or 0)
    return totals


def totals_text(totals: Mapping[str, int], *, empty: str = "0") -> str:
    """``30 pcs, 2,500 g``: one part per unit, in a fixed order; ``empty`` when there is nothing."""
    units = sorted(totals, key=lambda unit: (UNIT_ORDER.index(unit) if unit in UNIT_ORDER else 99, unit))
    parts = [quantity_text(totals[unit], unit) for unit in units if totals[unit]]
    return ", ".join(parts) or empty
