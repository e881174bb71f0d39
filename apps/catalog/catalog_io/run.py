"""Import a catalog in one transaction: plan every table first, write only if no row has a problem.

The plan reads every row against the catalog as it is plus what the import adds (a product may
name an item from the same import). Writes go through the owning services in the order
locations, items, products, listings; a service refusing a row (a domain error) or the database
refusing a write rolls the whole import back, so nothing is ever half-imported. A dry run goes
through the same writes and rolls them back, so it reports what the services would refuse too.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import structlog
from django.db import DatabaseError, transaction

from apps.catalog.catalog_io.tables import KINDS, KindPlan, Plan, Table, kinds_in_order
from apps.core.errors import DomainError

log = structlog.get_logger("stockroom.catalog")

# A callable told (stage, rows done since the last call, total=rows in the stage).
Progress = Callable[..., None]


class _RolledBack(Exception):
    """Leaves the transaction of a dry run or a refused import."""


def catalog_import(*, tables: list[Table], dry_run: bool = False, progress: Progress | None = None) -> Plan:
    """Plan ``tables`` and, unless any row has a problem or ``dry_run``, write them. Returns the plan with outcomes."""
    plan = Plan()
    by_kind: dict[str, Table] = {}
    kinds = kinds_in_order()
    for table in tables:
        if table.kind in by_kind:
            plan.file_problems.append(f"{table.source}: {table.kind} also come from {by_kind[table.kind].source}")
        elif table.kind not in KINDS:
            plan.file_problems += [f"{table.source}: {problem}" for problem in table.problems] or [
                f"{table.source}: “{table.kind}” is not a kind of catalog table"
            ]
        else:
            by_kind[table.kind] = table
    for kind in kinds:
        if kind.name in by_kind:
            found = by_kind[kind.name]
            plan.kinds.append(kind.plan(found, plan, _stage(progress, f"check {kind.name}", len(found.rows))))
    if plan.problems:
        log.info("catalog_import_refused", problems=len(plan.problems))
        return plan
    try:
        with transaction.atomic():
            for kind_plan in plan.kinds:
                total = kind_plan.count("new") + kind_plan.count("update")
                name = kind_plan.kind.name
                step = _stage(progress, f"write {name}", total)
                _apply(kind_plan, step)
                if plan.problems:
                    raise _RolledBack
            if dry_run:
                raise _RolledBack
    except _RolledBack:
        pass
    summary = {kp.kind.name: {a: kp.count(a) for a in ("new", "update", "unchanged")} for kp in plan.kinds}
    log.info("catalog_imported", dry_run=dry_run, refused=bool(plan.problems), **summary)
    return plan


def _stage(progress: Progress | None, stage: str, total: int) -> Callable[[int], None] | None:
    return partial(progress, stage, total=total) if progress else None


def _apply(kind_plan: KindPlan, progress: Callable[[int], None] | None) -> None:
    """Write one kind; a refusal becomes the problem of the row that caused it (or of the table)."""
    try:
        with transaction.atomic():
            kind_plan.kind.apply(kind_plan, progress)
    except DomainError as err:
        _blame(kind_plan, err.detail, getattr(err, "data", {}).get("field", ""))
    except DatabaseError as err:
        _blame(kind_plan, f"the database refused the write: {str(err).splitlines()[0]}", "")


def _blame(kind_plan: KindPlan, message: str, column: str) -> None:
    if kind_plan.writing is not None:
        kind_plan.writing.error(column, message)
    else:
        kind_plan.table.problems.append(message)
