"""``{% load units %}``: ``{{ level.on_hand|qty:item.unit }}`` reads "17,250 g" (``apps.catalog.units``)."""

from __future__ import annotations

from django import template

from apps.catalog.units import quantity_text, unit_symbol

register = template.Library()


@register.filter
def qty(value: int | float | None, unit: str) -> str:
    return quantity_text(value, unit)


@register.filter
def signed_qty(value: int | float | None, unit: str) -> str:
    return quantity_text(value, unit, signed=True)


@register.filter
def unit_of(unit: str) -> str:
    """The plural symbol of a unit, for a column head or beside an input: "pcs", "g"."""
    return unit_symbol(unit)
