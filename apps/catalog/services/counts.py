"""Stock counts: a sheet per location, counted quantities (typed in or uploaded), a preview, then apply.

What a count books. Creating the sheet takes each item's on hand (``expected``) and reserved at
that moment, the snapshot. Applying books ``counted - expected`` per line as one ``count``
movement: a delta on the on hand of the moment of applying. The count says what was on the shelf
at the snapshot, and whatever moved since (store sales, receipts, orders) is kept, not undone.
So the shelf is counted right after the sheet is made; a sheet made long before the counting is
cancelled and made again. The preview shows what moved since the snapshot, line by line.

Reservations. A line whose difference leaves on hand under what is reserved at that moment takes
stock promised to orders: the preview flags it, apply refuses it unless staff confirmed that line,
and a confirmed one opens a ``pos_into_reserved`` incident (the item's channels are told 0 until
the cause is gone), as every movement into reserved stock does (``services.movements``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import structlog
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.catalog.errors import (
    CountFileRejected,
    CountNeedsConfirmation,
    InvalidMovement,
    NegativeStockRefused,
    StockWorkRefused,
)
from apps.catalog.locks import levels_for_update, stock_count_for_update
from apps.catalog.models import Incident, Item, Location, Movement, StockCount, StockCountLine, StockLevel
from apps.catalog.services.incidents import incident_open
from apps.catalog.services.movements import MAX_QUANTITY
from apps.catalog.signals import Tier
from apps.catalog.stock.ledger import MovementSpec, movements_apply
from apps.core.spreadsheets import csv_text_read

log = structlog.get_logger("stockroom.counts")

EDITABLE = (StockCount.Status.DRAFT, StockCount.Status.COUNTED)
# A sheet is counted by people: beyond this, a SKU prefix splits the work into sheets.
MAX_LINES = 10_000
MAX_FILE_BYTES = 2 * 1024 * 1024
FILE_COLUMNS = ("sku", "counted")


# --- Making the sheet ----------------------------------------------------------------------------


def _check_location(location: Location) -> None:
    if location.kind == Location.Kind.SUPPLIER:
        raise StockWorkRefused(f"{location.code} is a supplier's drop-ship location; stock there follows its feed.")


def _scope(items: Sequence[Item], sku_prefix: str, search: str) -> str:
    parts = [f"{len(items)} chosen items" if items else "all items stocked here"]
    if sku_prefix:
        parts.append(f"SKUs starting with {sku_prefix}")
    if search:
        parts.append(f"matching “{search}”")
    return ", ".join(parts)[:200]


@transaction.atomic
def stock_count_create(
    *,
    location: Location,
    actor: str,
    blind: bool = False,
    sku_prefix: str = "",
    search: str = "",
    items: Sequence[Item] = (),
    note: str = "",
) -> StockCount:
    """A count sheet for one location, with each item's on hand and reserved of this moment.

    The items: those chosen, else every active item stocked at the location (a level there, even
    at zero); a SKU prefix and a search (SKU or name) narrow either set.
    """
    _check_location(location)
    sku_prefix, search = sku_prefix.strip(), search.strip()
    if items:
        candidates = Item.objects.filter(pk__in=sorted({item.pk for item in items}))
    else:
        candidates = Item.objects.filter(is_active=True, levels__location=location)
    if sku_prefix:
        candidates = candidates.filter(sku__istartswith=sku_prefix)
    if search:
        candidates = candidates.filter(Q(sku__icontains=search) | Q(name__icontains=search))
    chosen = list(candidates.order_by("sku").values_list("pk", flat=True)[: MAX_LINES + 1])
    scope = _scope(items, sku_prefix, search)
    if not chosen:
        hint = "" if items else " To count items not stocked here yet, choose them under Items."
        raise InvalidMovement(f"No item to count at {location.code}: {scope}.{hint}")
    if len(chosen) > MAX_LINES:
        raise InvalidMovement(f"More than {MAX_LINES} items to count; narrow the sheet with a SKU prefix.")
    count = StockCount.objects.create(location=location, blind=blind, scope=scope, note=note, created_by=actor)
    _lines_add(count, chosen)
    log.info("stock_count_created", count=count.pk, location=location.code, lines=len(chosen), by=actor)
    return count


def _lines_add(count: StockCount, item_ids: Sequence[int]) -> list[StockCountLine]:
    """Lines for these items, each with its on hand and reserved of now (0 where it has no level yet)."""
    # One statement: every line's snapshot is of the same moment.
    levels = {
        item_id: (on_hand, reserved)
        for item_id, on_hand, reserved in StockLevel.objects.filter(
            location_id=count.location_id, item_id__in=list(item_ids)
        ).values_list("item_id", "on_hand", "reserved")
    }
    return StockCountLine.objects.bulk_create(
        [
            StockCountLine(
                count=count,
                item_id=item_id,
                expected=levels.get(item_id, (0, 0))[0],
                reserved=levels.get(item_id, (0, 0))[1],
            )
            for item_id in item_ids
        ],
        batch_size=2000,
    )


@transaction.atomic
def stock_count_add_items(*, count_id: int, items: Sequence[Item], actor: str) -> int:
    """Add items to a sheet that is still being counted; returns how many lines were added.

    Any item of the catalog can be added, stocked at the location or not yet (a shelf holds
    something the books do not, the opening count of a new location): its line expects what is
    on hand now, 0 where it has no level, and applying the count makes the level. Items already
    on the sheet are left as they are.
    """
    count = stock_count_for_update(count_id)
    _check_editable(count)
    on_sheet = set(count.lines.values_list("item_id", flat=True))
    new = sorted({item.pk for item in items} - on_sheet)
    if len(on_sheet) + len(new) > MAX_LINES:
        raise InvalidMovement(f"A sheet holds at most {MAX_LINES} lines; count the rest on another sheet.")
    _lines_add(count, new)
    if new:
        count.scope = f"{count.scope}, {len(new)} added"[:200]
        count.save(update_fields=["scope"])
    log.info("stock_count_items_added", count=count.pk, added=len(new), by=actor)
    return len(new)


@transaction.atomic
def stock_count_update(*, count: StockCount, note: str) -> StockCount:
    """The note is the one thing of a sheet that changes by hand; the rest follows its steps."""
    count = stock_count_for_update(count.pk)
    count.note = note
    count.save(update_fields=["note"])
    return count


# --- Counting ------------------------------------------------------------------------------------


def _check_editable(count: StockCount) -> None:
    if count.status not in EDITABLE:
        raise StockWorkRefused(f"{count} is {count.get_status_display().lower()}; its quantities are final.")


def _record(count: StockCount, quantities: Mapping[int, int | None]) -> int:
    for qty in quantities.values():
        if qty is not None and not 0 <= qty <= MAX_QUANTITY:
            raise InvalidMovement(f"Counted quantities must be between 0 and {MAX_QUANTITY}.")
    current = dict(count.lines.filter(pk__in=sorted(quantities)).values_list("pk", "counted"))
    unknown = sorted(set(quantities) - set(current))
    if unknown:
        raise InvalidMovement(f"Lines {unknown} are not on {count}.")
    changed = [StockCountLine(pk=pk, counted=qty) for pk, qty in sorted(quantities.items()) if current[pk] != qty]
    StockCountLine.objects.bulk_update(changed, ["counted"], batch_size=1000)
    return len(changed)


@transaction.atomic
def stock_count_record(*, count_id: int, quantities: Mapping[int, int | None], actor: str) -> int:
    """Set what was counted ({line id: units}, None to clear a line); returns how many lines changed.

    Quantities can be corrected until the count is applied; nothing moves before that.
    """
    count = stock_count_for_update(count_id)
    _check_editable(count)
    changed = _record(count, quantities)
    log.info("stock_count_recorded", count=count.pk, changed=changed, by=actor)
    return changed


@dataclass(frozen=True)
class FileProblem:
    row: int  # the file's line number (the header is 1); 0 for the file as a whole
    detail: str
    sku: str = ""


_WHOLE = re.compile(r"[+-]?[0-9]+")


def count_file_read(data: bytes) -> tuple[list[tuple[int, str, int]], list[FileProblem]]:
    """A count file (CSV, UTF-8, columns ``sku`` and ``counted``, others ignored) as (row, sku, counted).

    Every problem is reported with its row, not only the first; a file that cannot be read as
    text or as CSV (a wrong encoding, a quote left open where the file was cut) is one problem.
    """
    if len(data) > MAX_FILE_BYTES:
        return [], [FileProblem(0, f"The file is larger than {MAX_FILE_BYTES // 1024} KiB; split it.")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        row = data[: err.start].count(b"\n") + 1
        return [], [FileProblem(row, "The file is not UTF-8 text (from this row on); save it as “CSV UTF-8”.")]
    if "\x00" in text:
        return [], [FileProblem(0, "The file holds NUL bytes: it is not a CSV text file.")]
    if not text.strip():
        return [], [FileProblem(0, "The file is empty.")]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, str, int]] = []
    problems: list[FileProblem] = []
    first_row: dict[str, int] = {}
    header: list[str] | None = None
    try:
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # blank lines
            if header is None:
                header = [cell.strip().lower() for cell in cells]
                if not set(FILE_COLUMNS) <= set(header):
                    found = ", ".join(header) or "nothing"
                    return [], [
                        FileProblem(line, f"The first row must name the columns sku and counted (it has {found}).")
                    ]
                continue
            if len(cells) != len(header):
                columns = f"{len(cells)} column{'s' if len(cells) != 1 else ''}"
                problems.append(
                    FileProblem(line, f"{columns} where the header has {len(header)}: is the file cut short?")
                )
                continue
            # The sheet's download marked formula-like SKUs with a leading ' (apps.core.spreadsheets).
            sku = csv_text_read(cells[header.index("sku")].strip())
            raw = cells[header.index("counted")].strip()
            if not sku:
                problems.append(FileProblem(line, "No SKU."))
                continue
            if sku in first_row:
                problems.append(FileProblem(line, f"{sku} is already on row {first_row[sku]}.", sku))
                continue
            first_row[sku] = line
            if not _WHOLE.fullmatch(raw):
                problems.append(FileProblem(line, f"Counted “{raw}” is not a whole number.", sku))
            elif int(raw) < 0:
                problems.append(FileProblem(line, f"Counted {int(raw)} is negative.", sku))
            elif int(raw) > MAX_QUANTITY:
                problems.append(FileProblem(line, f"Counted {raw} is beyond {MAX_QUANTITY}.", sku))
            else:
                rows.append((line, sku, int(raw)))
    except csv.Error as err:
        problems.append(FileProblem(reader.line_num, f"The file cannot be read from here on ({err}): is it cut short?"))
    if header is None:
        problems.append(FileProblem(0, "The file has no header row (sku,counted)."))
    elif not rows and not problems:
        problems.append(FileProblem(0, "The file names no SKU."))
    return rows, problems


def stock_count_upload(*, count_id: int, data: bytes, actor: str, add_missing: bool = False) -> int:
    """Record the counted quantities of a CSV file (``sku,counted``); returns how many SKUs it set.

    All or nothing: one bad row (unknown SKU, not on this sheet, not a whole number, negative,
    a SKU twice) and nothing is recorded; ``CountFileRejected.data["rows"]`` lists every problem.
    Lines the file does not name keep what they had. ``add_missing``: items of the catalog the
    file names that are not on the sheet are added to it (``stock_count_add_items``) instead of
    refused, so a file can count a location's items that have no level there yet.
    """
    rows, problems = count_file_read(data)
    with transaction.atomic():
        count = stock_count_for_update(count_id)
        _check_editable(count)
        on_sheet = dict(count.lines.values_list("item__sku", "pk"))
        missing = sorted({sku for _, sku, _ in rows if sku not in on_sheet})
        in_catalog = dict(Item.objects.filter(sku__in=missing).values_list("sku", "pk"))
        for row, sku, _ in rows:
            if sku in in_catalog and not add_missing:
                problems.append(FileProblem(row, f"{sku} is not on this count sheet.", sku))
            elif sku not in on_sheet and sku not in in_catalog:
                problems.append(FileProblem(row, f"Unknown SKU {sku}.", sku))
        if not problems and in_catalog:
            if len(on_sheet) + len(in_catalog) > MAX_LINES:
                problems.append(FileProblem(0, f"A sheet holds at most {MAX_LINES} lines; split the file."))
            else:
                sku_of = {pk: sku for sku, pk in in_catalog.items()}
                added = _lines_add(count, sorted(sku_of))
                on_sheet.update({sku_of[line.item_id]: line.pk for line in added})
                count.scope = f"{count.scope}, {len(added)} added"[:200]
                count.save(update_fields=["scope"])
        if problems:
            problems.sort(key=lambda problem: problem.row)
            raise CountFileRejected(
                f"Nothing was recorded: the file has {len(problems)} problem{'s' if len(problems) > 1 else ''}.",
                rows=[{"row": p.row, "sku": p.sku, "detail": p.detail} for p in problems],
            )
        _record(count, {on_sheet[sku]: counted for _, sku, counted in rows})
    log.info("stock_count_uploaded", count=count.pk, rows=len(rows), by=actor)
    return len(rows)


@transaction.atomic
def stock_count_submit(*, count_id: int, actor: str) -> StockCount:
    """The counting is done: the sheet shows expected quantities again (a blind count) and can be applied."""
    count = stock_count_for_update(count_id)
    if count.status == StockCount.Status.COUNTED:
        return count
    _check_editable(count)
    if not count.lines.filter(counted__isnull=False).exists():
        raise InvalidMovement("Enter at least one counted quantity first.")
    count.status = StockCount.Status.COUNTED
    count.counted_by, count.counted_at = actor, timezone.now()
    count.save(update_fields=["status", "counted_by", "counted_at"])
    return count


# --- Preview and apply ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CountOutcome:
    """One line of a count against its level of now: what applying would book, and what it leaves."""

    line: StockCountLine
    on_hand: int  # now
    reserved: int  # now
    allow_negative: bool

    @property
    def counted(self) -> int | None:
        return self.line.counted

    @property
    def difference(self) -> int:
        """What applying books: counted - expected at the snapshot (0 for a line not counted)."""
        if self.line.difference is not None:
            return self.line.difference  # booked
        return 0 if self.line.counted is None else self.line.counted - self.line.expected

    @property
    def moved_since(self) -> int:
        """How much the on hand moved between the snapshot and now (kept by applying)."""
        return self.on_hand - self.line.expected

    @property
    def on_hand_after(self) -> int:
        return self.on_hand + self.difference

    @property
    def eats_reserved(self) -> bool:
        """Booking this line takes stock promised to orders: staff must confirm it (booked: they did)."""
        if self.line.difference is not None:
            return self.line.short_confirmed
        return self.difference < 0 and self.on_hand_after < self.reserved

    @property
    def goes_negative(self) -> bool:
        return self.on_hand_after < 0 and not self.allow_negative

    def as_dict(self) -> dict[str, object]:
        return {
            "sku": self.line.item.sku,
            "counted": self.counted,
            "expected": self.line.expected,
            "on_hand": self.on_hand,
            "reserved": self.reserved,
            "on_hand_after": self.on_hand_after,
        }


def _outcomes(count: StockCount, lines: list[StockCountLine], levels: Mapping[int, StockLevel]) -> list[CountOutcome]:
    negative_allowed = count.location.allow_negative
    outcomes = []
    for line in lines:
        level = levels.get(line.item_id)
        outcomes.append(
            CountOutcome(
                line=line,
                on_hand=level.on_hand if level else 0,
                reserved=level.reserved if level else 0,
                allow_negative=level.allow_negative if level else negative_allowed,
            )
        )
    return outcomes


def stock_count_preview(*, count: StockCount) -> list[CountOutcome]:
    """Every line against its level of now (a read; ``stock_count_apply`` does the same under the locks)."""
    lines = list(count.lines.select_related("item", "movement"))
    levels = StockLevel.objects.filter(location_id=count.location_id, item_id__in=[line.item_id for line in lines])
    return _outcomes(count, lines, {level.item_id: level for level in levels})


@dataclass(frozen=True)
class CountApplied:
    count: StockCount
    movements: list[Movement]
    incidents: list[Incident]
    replayed: bool


def stock_count_apply(*, count_id: int, actor: str, confirmed: Collection[int] = ()) -> CountApplied:
    """Book every counted line's difference as one ``count`` movement; the sheet becomes applied.

    ``confirmed``: ids of the lines staff confirmed although they leave on hand under reserved.
    Applying an applied count again books nothing. Locks: the sheet, then its levels in
    (item, location) order (``apps.catalog.locks``); everything is checked inside them.
    """
    with transaction.atomic():
        count = stock_count_for_update(count_id)
        if count.status == StockCount.Status.APPLIED:
            return CountApplied(count=count, movements=[], incidents=[], replayed=True)
        if count.status != StockCount.Status.COUNTED:
            state = count.get_status_display().lower()
            raise StockWorkRefused(f"{count} is {state}; only a submitted count can be applied.")
        lines = list(count.lines.filter(counted__isnull=False).select_related("item"))
        locked = levels_for_update([(line.item_id, count.location_id) for line in lines])
        outcomes = _outcomes(count, lines, {level.item_id: level for level in locked})
        negative = [o for o in outcomes if o.goes_negative]
        if negative:
            skus = ", ".join(f"{o.line.item.sku} ({o.on_hand_after})" for o in negative)
            raise NegativeStockRefused(
                f"Applying would take on hand below zero at {count.location.code}: {skus}. More left since the "
                "snapshot than was counted; correct the count of these lines.",
                lines=[o.as_dict() for o in negative],
            )
        confirmed = set(confirmed)
        unconfirmed = [o for o in outcomes if o.eats_reserved and o.line.pk not in confirmed]
        if unconfirmed:
            skus = ", ".join(f"{o.line.item.sku} ({o.on_hand_after} left, {o.reserved} reserved)" for o in unconfirmed)
            raise CountNeedsConfirmation(
                f"These lines leave less on hand than is reserved for orders: {skus}. Confirm them to apply.",
                lines=[o.as_dict() for o in unconfirmed],
            )
        booked = [o for o in outcomes if o.difference]
        short = any(o.eats_reserved for o in booked)
        movements = movements_apply(
            movements=[
                MovementSpec(
                    item_id=o.line.item_id,
                    location_id=count.location_id,
                    kind=Movement.Kind.COUNT,
                    on_hand_delta=o.difference,
                    reference=count.ledger_reference,
                    note=f"counted {o.line.counted}, expected {o.line.expected}",
                    idempotency_key=f"{count.ledger_reference}:{o.line.pk}",
                )
                for o in booked
            ],
            actor=actor,
            priority=Tier.SALE if short else Tier.MANUAL,
            reason=Movement.Kind.COUNT,
        )
        by_item = {movement.item_id: movement for movement in movements}
        incidents = [
            incident_open(
                kind=Incident.Kind.POS_INTO_RESERVED,
                item_id=o.line.item_id,
                location_id=count.location_id,
                shortfall=min(o.reserved, o.reserved - o.on_hand_after),
                reference=f"movement:{by_item[o.line.item_id].pk}",
                detail=(
                    f"Stock count {count.pk} at {count.location.code} found {o.line.counted} "
                    f"(expected {o.line.expected}), confirmed by {actor}: on hand {o.on_hand_after} "
                    f"under reserved {o.reserved}."
                ),
            )
            for o in booked
            if o.eats_reserved
        ]
        for o in outcomes:
            o.line.short_confirmed = o.eats_reserved
            o.line.difference = o.difference
            o.line.movement = by_item.get(o.line.item_id)
        StockCountLine.objects.bulk_update([o.line for o in outcomes], ["difference", "movement", "short_confirmed"])
        count.status = StockCount.Status.APPLIED
        count.applied_by, count.applied_at = actor, timezone.now()
        count.save(update_fields=["status", "applied_by", "applied_at"])
    log.info("stock_count_applied", count=count.pk, movements=len(movements), short=len(incidents), by=actor)
    return CountApplied(count=count, movements=movements, incidents=incidents, replayed=False)


@transaction.atomic
def stock_count_cancel(*, count_id: int, actor: str) -> StockCount:
    """Drop a count that will not be applied (nothing moved); an applied one is undone by another count."""
    count = stock_count_for_update(count_id)
    if count.status not in EDITABLE:
        raise StockWorkRefused(f"{count} is {count.get_status_display().lower()}; it cannot be cancelled.")
    count.status = StockCount.Status.CANCELLED
    count.cancelled_by, count.cancelled_at = actor, timezone.now()
    count.save(update_fields=["status", "cancelled_by", "cancelled_at"])
    return count
