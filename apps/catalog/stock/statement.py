"""The stock part of single-statement writers: lock, check, move ``reserved``, write the ledger.

A caller (an order's fast path) gives its own writes as CTEs (``gate_ctes``) and the name of the
one among them whose row, when there is one, lets the stock move (``gate``, with a column ``id``).
The owner wraps them:

    wanted   the levels to lock, with q (units each is to hold; 0: locked, not moved)
    locked   the lock (``locks.LEVELS_FOR_UPDATE_CTE``), in (item_id, location_id) order, with ATP
    verdict  ok = every level with q > 0 still has ATP >= q in the locked rows
    ...      the caller's CTEs: they write only when verdict says ok
    moved    reserved += q on the locked levels, only when the gate has its row
    ledger   one movement per moved level, referenced by the gate's id
    ...      listeners' parts over ``moved`` (``changes.statement_part_register``)

and returns ``ok``, whether the gate wrote, the caller's results and the listeners'. The text does
not depend on the number of levels (arrays, not VALUES lists), so PostgreSQL plans it once per
session. (Data-modifying CTEs run to completion whether or not the final SELECT reads them.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apps.catalog.locks import LEVELS_FOR_UPDATE_CTE
from apps.catalog.models import StockLevel
from apps.catalog.stock.changes import StatementPart, statement_parts, stock_changed_announce
from apps.core.db import Statement, int_array, prepared_cursor


@dataclass(frozen=True)
class HoldStatement:
    """A composed statement: its prepared text and where each part's results are in its row."""

    statement: Statement
    caller_results: int
    parts: tuple[StatementPart, ...]


def hold_statement(*, gate: str, gate_ctes: str, reference: str, results: Sequence[str]) -> HoldStatement:
    """Compose the statement. ``reference`` is a SQL expression over the gate row ``g`` (the ledger rows'
    reference); ``results`` are the caller's SQL expressions, one value each, returned in order."""
    parts = tuple(statement_parts())
    listener_ctes = "".join(f",\n{part.ctes}" for part in parts)
    columns = [*results, *(expression for part in parts for expression in part.results)]
    sql = f"""
WITH wanted AS (
    SELECT * FROM unnest(%(level_items)s::bigint[], %(level_locations)s::bigint[], %(level_q)s::int[])
           AS w(item_id, location_id, q)
), locked AS ({LEVELS_FOR_UPDATE_CTE.format(wanted="wanted")}
), verdict AS (
    SELECT count(*) FILTER (WHERE q > 0 AND atp >= q) = %(needed)s AS ok FROM locked
), {gate_ctes},
moved AS (
    UPDATE catalog_stocklevel AS s
       SET reserved = s.reserved + l.q, updated_at = now()
      FROM locked l, {gate} g
     WHERE l.q > 0 AND s.id = l.id
    RETURNING s.item_id, s.location_id, l.q
), ledger AS (
    INSERT INTO catalog_movement (item_id, location_id, kind, on_hand_delta, reserved_delta, reference, actor,
                                  note, idempotency_key, created_at)
    SELECT m.item_id, m.location_id, %(kind)s::varchar, 0, m.q, {reference}, %(actor)s::varchar, '', NULL, now()
      FROM moved m, {gate} g
    RETURNING id
){listener_ctes}
SELECT v.ok, EXISTS (SELECT 1 FROM {gate}), {", ".join(columns)}
  FROM verdict v
"""
    return HoldStatement(Statement.of(sql), len(results), parts)


def hold_params(
    *, levels: Sequence[tuple[int, int]], hold: Mapping[tuple[int, int], int], kind: str, actor: str, priority: int
) -> dict[str, Any]:
    """The stock part's parameters: ``levels`` are every (item, location) to lock, ``hold`` the units to hold."""
    wanted = sorted(set(levels) | set(hold))
    return {
        "level_items": int_array(item for item, _ in wanted),
        "level_locations": int_array(loc for _, loc in wanted),
        "level_q": int_array(hold.get(pair, 0) for pair in wanted),
        "needed": sum(1 for q in hold.values() if q > 0),
        "kind": kind,
        "actor": actor,
        "priority": int(priority),
        "reason": kind[:60],
    }


@dataclass(frozen=True)
class HoldResult:
    covered: bool  # False: a level no longer covered its quantity and nothing was written
    written: bool  # the gate wrote (and the stock moved)
    results: tuple[Any, ...]  # the caller's


def hold_execute(
    held: HoldStatement, *, params: Mapping[str, Any], hold: Mapping[tuple[int, int], int], reason: str
) -> HoldResult:
    """Run the statement (its own transaction outside one, else part of the caller's) and, when it wrote,
    announce the move with what the listeners' parts returned."""
    with prepared_cursor(raw=True) as cursor:
        cursor.execute(held.statement.text, held.statement.args(params))
        row = cursor.fetchone()
    ok, written, values = bool(row[0]), bool(row[1]), row[2:]
    if not written:
        return HoldResult(covered=ok, written=False, results=())
    statement: dict[str, tuple[Any, ...]] = {}
    at = held.caller_results
    for part in held.parts:
        statement[part.name] = tuple(values[at : at + len(part.results)])
        at += len(part.results)
    stock_changed_announce(
        sender=StockLevel,
        pairs=[pair for pair, q in hold.items() if q > 0],
        priority=params["priority"],
        reason=reason,
        statement=statement,
    )
    return HoldResult(covered=True, written=True, results=tuple(values[: held.caller_results]))
