"""How the rest of the system hears that stock moved: announced here, and only here.

``stock_changed`` (``apps.catalog.signals``) is sent inside the writer's transaction with the
(item_id, location_id) pairs that moved, so that a listener (channel sync) can write its own rows
atomically with the move; anything that talks to the outside world defers to the commit.

A single-statement writer (an order's fast path) has no transaction a listener could share, so a
listener that must write atomically with it registers a part of that statement here
(``statement_part_register``). The owner splices every registered part into its statements and
hands each listener what its part returned, in the ``statement`` argument of ``stock_changed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apps.catalog.signals import Tier, stock_changed


@dataclass(frozen=True)
class StatementPart:
    """CTEs a listener adds to the owner's single-statement writes.

    ``ctes``: one or more ``name AS (...)`` joined by commas, reading ``moved`` (item_id,
    location_id, q: the levels the statement changed) and the parameters ``%(priority)s`` (int)
    and ``%(reason)s`` (text). ``results``: SQL expressions over them, one value each, handed to
    the listener as ``statement[name]`` in the same order. CTE names start with ``name`` so
    that parts cannot collide.
    """

    name: str
    ctes: str
    results: tuple[str, ...]


_parts: dict[str, StatementPart] = {}


def statement_part_register(part: StatementPart) -> None:
    """Called once by a listener (its AppConfig.ready), before any single-statement write runs."""
    _parts[part.name] = part


def statement_parts() -> list[StatementPart]:
    return [_parts[name] for name in sorted(_parts)]


def stock_changed_announce(
    *,
    sender: type,
    pairs: Iterable[tuple[int, int]],
    priority: int,
    reason: str,
    statement: Mapping[str, Sequence[Any]] | None = None,
) -> None:
    """Tell listeners these levels moved (or changed sellability), in the writer's transaction."""
    stock_changed.send(
        sender=sender,
        pairs=sorted(set(pairs)),
        priority=Tier(priority),
        reason=reason,
        statement=statement,
    )
