"""What other apps hear when stock or the catalog changes.

``stock_changed`` is sent by the stock owner only (``apps.catalog.stock.changes``), inside the
writing transaction, with the (item_id, location_id) pairs that moved, so that listeners (channel
sync) can enqueue their work atomically. Listeners that talk to the outside world must defer with
``transaction.on_commit``.
"""

from __future__ import annotations

from django.db import models
from django.dispatch import Signal


class Tier(models.IntegerChoices):
    """How urgently channels must hear of a change (its sync tier): lower is more urgent. A listing's sync
    work keeps the most urgent tier of the changes that reached it."""

    SALE = 1, "1: sale / oversell risk"  # sales, oversell risk
    MANUAL = 2, "2: manual adjustment"  # manual adjustments and counts
    BACKGROUND = 3, "3: background"  # supplier feeds, settings, forecasts


# kwargs: pairs: list[tuple[int, int]], priority: Tier, reason: str, and statement:
# {part name: values} when a single-statement writer ran listeners' parts (``stock.changes``), else None
stock_changed = Signal()

# kwargs: product_ids: list[int], priority: Tier, reason: str (a product's make-up changed)
products_changed = Signal()

# kwargs: incident_id: int. Sent after commit when an incident opens (oversell, sale into reserved, ...).
incident_opened = Signal()

# kwargs: item_ids: list[int], reason: str. Sent inside the writer's transaction when the cause of an
# incident about these items may be gone without any stock moving (an oversold order closed, an
# incident resolved), so that channels told 0 for it are told the truth again.
incident_cause_changed = Signal()
