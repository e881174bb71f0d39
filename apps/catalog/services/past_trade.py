"""Trade from before Stockroom (or the demo's past weeks) brought into the ledger with its own dates."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from django.db import transaction

from apps.catalog.stock.past import PastMovement, history_append

log = structlog.get_logger("stockroom.stock")

__all__ = ["PastMovement", "history_import"]


@transaction.atomic
def history_import(*, movements: Sequence[PastMovement], reference: str, actor: str) -> int:
    """Append balanced past movements (see ``stock.history``); no level moves. Returns how many rows."""
    written = history_append(movements=movements, reference=reference, actor=actor)
    log.info("history_imported", movements=written, reference=reference, actor=actor)
    return written
