"""The shape of a catalog import: tables of text cells in, a plan with per-row outcomes out.

A *kind* (items, products, locations, listings) knows its columns, how to read a row into
field values, how a row differs from the record it names, and which service writes it.
Kinds register themselves here; each app that owns one keeps it in its ``catalog_io`` module
(listings live with channels, which sit above the catalog).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.db import models

NEW, UPDATE, UNCHANGED, ERROR = "new", "update", "unchanged", "error"


@dataclass
class Table:
    """One kind's rows as read from a file or a sheet: header names and text cells."""

    kind: str
    source: str
    headers: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (row number as a spreadsheet shows it, cells by column)
    problems: list[str] = field(default_factory=list)  # the file itself is unreadable or malformed
    row_problems: dict[int, str] = field(default_factory=dict)  # a row of the wrong width, by row number


@dataclass
class RowOutcome:
    number: int
    key: str
    action: str
    values: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, tuple[str, str]] = field(default_factory=dict)  # column: (was, becomes)
    errors: dict[str, list[str]] = field(default_factory=dict)  # column ("" for the row): messages
    record: models.Model | None = None
    cells: dict[str, str] = field(default_factory=dict)

    def error(self, column: str, message: str) -> None:
        self.errors.setdefault(column, []).append(message)
        self.action = ERROR


@dataclass
class KindPlan:
    kind: Kind
    table: Table
    rows: list[RowOutcome] = field(default_factory=list)
    writing: RowOutcome | None = None  # the row a service is writing (a refusal is that row's problem)

    def count(self, action: str) -> int:
        return sum(1 for row in self.rows if row.action == action)

    @property
    def problems(self) -> list[str]:
        messages = [f"{self.table.source}: {problem}" for problem in self.table.problems]
        for row in self.rows:
            for column, errors in row.errors.items():
                where = f"{self.table.source} row {row.number}" + (f", {column}" if column else "")
                messages += [f"{where}: {message}" for message in errors]
        return messages


class Plan:
    """What an import will do, kind by kind; the keys each kind will hold once it is applied."""

    def __init__(self) -> None:
        self.kinds: list[KindPlan] = []
        self.new_keys: dict[str, set[str]] = {}
        self.cache: dict[str, Any] = {}  # lookups kinds share while planning (items by SKU...)
        self.file_problems: list[str] = []  # tables that name no kind, or a kind twice

    @property
    def problems(self) -> list[str]:
        return self.file_problems + [problem for kind_plan in self.kinds for problem in kind_plan.problems]

    def for_kind(self, name: str) -> KindPlan | None:
        return next((kind_plan for kind_plan in self.kinds if kind_plan.kind.name == name), None)


# Cells as text -------------------------------------------------------------------------------

TRUE_WORDS = {"true", "yes", "y", "1"}
FALSE_WORDS = {"false", "no", "n", "0"}


def cell_text(value: Any) -> str:
    """A cell as the text a CSV file would hold (spreadsheets hand numbers and booleans as such)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def show(value: Any) -> str:
    """A field value as its cell in an export."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def parse_field(model_field: models.Field[Any, Any], text: str) -> Any:
    """A cell into a field value with the model field's own checks (type, choices, length, range)."""
    if isinstance(model_field, models.BooleanField):
        word = text.lower()
        if word == "" and model_field.has_default():  # a new record takes the default
            return model_field.get_default()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValidationError(f"“{text}” is not true or false.")
    if text == "":
        if model_field.null:
            return None
        if model_field.has_default():
            return model_field.get_default()
    return model_field.clean(text, None)


def _keeps_when_empty(model_field: models.Field[Any, Any]) -> bool:
    """An empty cell leaves an existing record's value alone where it cannot mean "none" (is_active, unit...)."""
    return not model_field.null and model_field.has_default()


def messages_of(err: ValidationError) -> list[str]:
    return [str(message) for message in err.messages]


# Kinds ---------------------------------------------------------------------------------------


class Kind:
    """One table of the catalog. Subclasses name the model, key, columns and the services that write."""

    name: ClassVar[str]
    order: ClassVar[int]
    model: ClassVar[type[models.Model]]
    key: ClassVar[tuple[str, ...]]
    columns: ClassVar[tuple[str, ...]]
    # Columns that are model fields read as they are (others are parsed by ``read_extra``).
    field_columns: ClassVar[tuple[str, ...]]
    # Columns a new record must have (an existing one keeps what a missing column does not say).
    required: ClassVar[tuple[str, ...]]
    # Columns that cannot change once the record exists (the key cannot by definition).
    fixed: ClassVar[tuple[str, ...]] = ()

    # Reading ---------------------------------------------------------------------------------

    def key_of(self, cells: dict[str, str]) -> str:
        return "/".join(cells.get(column, "") for column in self.key)

    def existing(self, keys: Sequence[str]) -> dict[str, models.Model]:
        """The records these keys name, by key."""
        raise NotImplementedError

    def read_extra(self, outcome: RowOutcome, plan: Plan) -> None:
        """Parse the columns that are not plain fields (references, make-up) into ``outcome.values``."""

    def current(self, record: models.Model) -> dict[str, Any]:
        """A record's values in the form ``read`` gives them, to see what a row changes."""
        return {column: getattr(record, column) for column in self.field_columns}

    def check(self, outcome: RowOutcome, plan: Plan) -> None:
        """Rules across columns (a product's make-up for its kind...)."""

    def plan(self, table: Table, plan: Plan, progress: Callable[[int], None] | None = None) -> KindPlan:
        kind_plan = KindPlan(kind=self, table=table)
        headers = set(table.headers)
        unknown = [header for header in table.headers if header not in self.columns]
        if unknown:
            table.problems.append(f"unknown column(s) {', '.join(unknown)}; the columns are {', '.join(self.columns)}")
        missing_key = [column for column in self.key if column not in headers]
        if missing_key:
            table.problems.append(f"the key column(s) {', '.join(missing_key)} are missing")
        if table.problems:
            return kind_plan
        found = self.existing(sorted({self.key_of(cells) for _, cells in table.rows}))
        first_row: dict[str, int] = {}
        meta = self.model._meta
        for number, cells in table.rows:
            if progress:
                progress(1)
            key = self.key_of(cells)
            outcome = RowOutcome(number=number, key=key, action=NEW, cells=cells, record=found.get(key))
            kind_plan.rows.append(outcome)
            if number in table.row_problems:
                outcome.error("", table.row_problems[number])
                continue
            if key in first_row:
                outcome.error("", f"{key} is already in row {first_row[key]} of this file")
                continue
            first_row[key] = number
            for column in self.field_columns:
                if column not in headers:
                    continue
                model_field = meta.get_field(column)
                assert isinstance(model_field, models.Field)
                if cells[column] == "" and outcome.record is not None and _keeps_when_empty(model_field):
                    continue
                try:
                    outcome.values[column] = parse_field(model_field, cells[column])
                except ValidationError as err:
                    for message in messages_of(err):
                        outcome.error(column, message)
            self.read_extra(outcome, plan)
            if outcome.record is None:
                for column in self.required:
                    if column not in headers or cells.get(column, "") == "":
                        outcome.error(column, "a new record needs this column")
            if outcome.action == ERROR:
                continue
            self.check(outcome, plan)
            if outcome.action != ERROR and outcome.record is not None:
                self._compare(outcome)
        plan.new_keys[self.name] = {row.key for row in kind_plan.rows if row.action == NEW}
        return kind_plan

    def _compare(self, outcome: RowOutcome) -> None:
        assert outcome.record is not None
        now = self.current(outcome.record)
        for column, value in outcome.values.items():
            if now[column] != value:
                if column in self.fixed:
                    outcome.error(column, f"cannot change once the record exists (it is {show(now[column])})")
                    continue
                outcome.changes[column] = (show(now[column]), outcome.cells.get(column, show(value)))
        if outcome.action != ERROR:
            outcome.action = UPDATE if outcome.changes else UNCHANGED

    # Writing ---------------------------------------------------------------------------------

    def apply(self, kind_plan: KindPlan, progress: Callable[[int], None] | None = None) -> None:
        """Create the new records and update the changed ones, through the owning services."""
        raise NotImplementedError

    # Export ----------------------------------------------------------------------------------

    def export_rows(self, queryset: models.QuerySet[Any] | None = None) -> Iterable[list[str]]:
        raise NotImplementedError


KINDS: dict[str, Kind] = {}


def register(kind_class: type[Kind]) -> type[Kind]:
    KINDS[kind_class.name] = kind_class()
    return kind_class


def kinds_in_order() -> list[Kind]:
    from django.utils.module_loading import autodiscover_modules

    import apps.catalog.catalog_io.kinds  # noqa: F401  (the catalog's own kinds)

    autodiscover_modules("catalog_io")  # kinds of the apps above the catalog (listings)
    return sorted(KINDS.values(), key=lambda kind: kind.order)
