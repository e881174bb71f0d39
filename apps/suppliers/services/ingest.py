"""Feed ingestion: read, validate, map, distrust, and apply only what changed.

Stages (pandas for the row work, bulk SQL for the writes):
1. read the bytes into a text table (``reading``), malformed lines are quarantined;
2. validate every row: SKU present, quantity a sane non-negative number, ISO 8601 timestamp
   not in the future nor older than the supplier's max age, duplicates resolved (latest wins);
3. map supplier SKUs through the mapping table; unknown SKUs are quarantined as unmapped;
4. refuse the whole run when too many rows are bad (default: more than half), keeping the
   last good data;
5. delta against the snapshot in the mapping table: only mappings whose quantity changed
   (or whose listing fingerprint changed, or that vanished) are written, and only items
   whose distrusted target moved get ledger movements and channel sync.

``rows_read == rows_accepted + rows_quarantined`` for every finished run; the database checks it.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import structlog
from django.db import connection, transaction
from django.utils import timezone

from apps.catalog.models import Incident
from apps.catalog.services.incidents import incident_open
from apps.catalog.stock.bulk import feed_run_reference, location_validity_changed, supplier_levels_set
from apps.suppliers import metrics
from apps.suppliers.limits import FeedTooLarge
from apps.suppliers.locks import supplier_feed_lock
from apps.suppliers.models import FeedRun, QuarantinedRow, Supplier, SupplierProduct
from apps.suppliers.services.health import supplier_health_record
from apps.suppliers.services.reading import FeedUnreadable, ParsedFeed, read_feed, records_frame
from apps.suppliers.services.runs import feed_run_heartbeat_step

log = structlog.get_logger("stockroom.suppliers.ingest")

DEFAULT_REJECT_THRESHOLD = 0.5
DEFAULT_MAX_QUANTITY = 1_000_000  # supplier units in one row; more is a broken feed, not stock
MAX_SKU_LENGTH = 100
FUTURE_TOLERANCE = timedelta(minutes=10)
# last_seen_at of unchanged mappings is refreshed at most this often, so a steady feed rewrites nothing.
SEEN_RESOLUTION = timedelta(hours=1)
FINGERPRINT_COLUMNS = ("title", "spec", "price", "pack_size")
UNMAPPED_REASON = "unmapped supplier_sku (quarantined until staff map it)"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class FeedSummary:
    run: FeedRun
    items_moved: int


def feed_ingest(
    *,
    supplier: Supplier,
    raw: bytes | None = None,
    records: Sequence[Any] | None = None,
    fmt: str = "csv",
    source: str = "",
    full: bool = True,
    progress: Progress | None = None,
    run: FeedRun | None = None,
) -> FeedRun:
    """Take in one feed (bytes in ``fmt``, or already-parsed ``records``) and record the run.

    ``full`` feeds list everything the supplier has, so mapped SKUs missing from them have
    vanished; webhook pushes are partial (``full=False``) and only update what they name.
    ``run``: a running run the caller started (a poll, from the start of its fetch).
    """
    started = time.perf_counter()
    run = run or FeedRun.objects.create(supplier=supplier, source=source[:500] or fmt)
    step = feed_run_heartbeat_step(run, progress)  # every stage moves the run's heartbeat
    try:
        step("read")
        parsed = records_frame(records) if records is not None else read_feed(raw or b"", fmt=fmt)
        step("validate")
        with supplier_feed_lock(supplier_id=supplier.pk):
            outcome = _ingest_parsed(supplier=supplier, run=run, parsed=parsed, full=full, step=step)
    except FeedTooLarge as err:
        feed_run_refuse(run=run, supplier=supplier, reason=str(err), started=started)
    except FeedUnreadable as err:
        _finish(run, status=FeedRun.Status.FAILED, error=str(err), started=started)
        supplier_health_record(supplier=supplier, ok=False, error=str(err))
        log.warning("feed_unreadable", supplier=supplier.code, run=run.pk, error=str(err))
    except Exception as err:
        _finish(run, status=FeedRun.Status.FAILED, error=f"{type(err).__name__}: {err}"[:2000], started=started)
        supplier_health_record(supplier=supplier, ok=False, error=str(err))
        log.exception("feed_failed", supplier=supplier.code, run=run.pk)
        raise
    else:
        run.duration = timedelta(seconds=time.perf_counter() - started)
        FeedRun.objects.filter(pk=run.pk).update(duration=run.duration)
        log.info(
            "feed_run",
            supplier=supplier.code,
            run=run.pk,
            status=run.status,
            read=run.rows_read,
            accepted=run.rows_accepted,
            changed=run.rows_changed,
            quarantined=run.rows_quarantined,
            moved=outcome,
            seconds=round(run.duration.total_seconds(), 3),
        )
    metrics.feed_run_recorded(supplier=supplier.code, status=run.status, quarantined=run.rows_quarantined)
    step("done")
    return run


def feed_run_refuse(*, run: FeedRun, supplier: Supplier, reason: str, started: float) -> FeedRun:
    """End a run refused whole before any row was read (a feed over a size limit): nothing applied, staff told."""
    _finish(run, status=FeedRun.Status.REFUSED, error=reason, started=started)
    incident_open(
        kind=Incident.Kind.FEED_REFUSED,
        location_id=supplier.location_id,
        reference=feed_run_reference(run.pk),
        detail=f"Feed from {supplier.code} refused: {reason}.",
    )
    supplier_health_record(supplier=supplier, ok=False, error=reason)
    log.warning("feed_refused", supplier=supplier.code, run=run.pk, reason=reason)
    return run


def _finish(run: FeedRun, *, status: str, error: str = "", started: float) -> None:
    run.status = status
    run.error = error
    run.finished_at = timezone.now()
    run.duration = timedelta(seconds=time.perf_counter() - started)
    # A run that could not be read at all counts its readable rows as quarantined (none were applied).
    run.rows_accepted = 0 if status != FeedRun.Status.SUCCEEDED else run.rows_accepted
    run.rows_quarantined = run.rows_read - run.rows_accepted
    run.rows_changed = 0 if status != FeedRun.Status.SUCCEEDED else run.rows_changed
    run.save(
        update_fields=[
            "status",
            "error",
            "finished_at",
            "duration",
            "rows_read",
            "rows_accepted",
            "rows_quarantined",
            "rows_changed",
        ]
    )


# --- validation -------------------------------------------------------------------------------


def validate(frame: pd.DataFrame, *, now: pd.Timestamp, max_age: timedelta, max_quantity: float) -> pd.DataFrame:
    """Add ``reason`` (empty when the row is good), ``sku``, ``qty`` and ``ts`` columns."""
    sku = frame["supplier_sku"].str.strip()
    # to_numeric and to_datetime accept surrounding blanks themselves; only the SKU needs stripping.
    qty_text = frame["quantity"]
    qty = pd.to_numeric(qty_text, errors="coerce").astype("float64")
    retry = qty.isna() & (qty_text != "")
    if retry.any():  # a decimal comma ("2,5" kg) from a European spreadsheet
        qty[retry] = pd.to_numeric(qty_text[retry].str.replace(",", ".", regex=False), errors="coerce")
    ts_text = frame["updated_at"]
    ts = pd.to_datetime(ts_text, format="ISO8601", utc=True, errors="coerce")
    conditions = [
        (sku == "").to_numpy(),
        (sku.str.len() > MAX_SKU_LENGTH).to_numpy(),
        (qty_text == "").to_numpy(),
        qty.isna().to_numpy(),
        ~np.isfinite(qty.fillna(0).to_numpy()),
        (qty < 0).to_numpy(),
        (qty > max_quantity).to_numpy(),
        (ts_text == "").to_numpy(),
        ts.isna().to_numpy(),
        (ts > now + FUTURE_TOLERANCE).to_numpy(),
        (ts < now - max_age).to_numpy(),
    ]
    choices = [
        "missing supplier_sku",
        f"supplier_sku longer than {MAX_SKU_LENGTH} characters",
        "missing quantity (truncated row?)",
        "quantity is not a number",
        "quantity is not a finite number",
        "negative quantity",
        f"absurd quantity (over {max_quantity:g})",
        "missing updated_at (truncated row?)",
        "updated_at is not an ISO 8601 timestamp",
        "updated_at is in the future",
        "updated_at is older than the supplier's max age",
    ]
    out = pd.DataFrame(
        {
            "row_number": frame["row_number"].to_numpy(),
            "sku": sku.to_numpy(),
            "qty": qty.to_numpy(),
            # UTC as naive datetime64: converting a million aware Timestamps to objects is slow.
            "ts": ts.dt.tz_localize(None).to_numpy(),
            # Object array of a dozen shared strings: np.select on strings would build a wide unicode array.
            "reason": np.array(["", *choices], dtype=object)[np.select(conditions, range(1, len(choices) + 1), 0)],
        }
    )
    present = [c for c in FINGERPRINT_COLUMNS if c in frame.columns]
    if present:
        hashed = pd.util.hash_pandas_object(frame[present].astype(str), index=False).to_numpy()
        out["fingerprint"] = [f"{h:016x}" for h in hashed.tolist()]
    else:
        out["fingerprint"] = ""
    # Duplicates among otherwise good rows: the latest report wins, the others are quarantined.
    good = out["reason"] == ""
    dup = out.loc[good].duplicated("sku", keep=False)
    if dup.any():
        dups = out.loc[dup[dup].index].sort_values(["ts", "row_number"])
        winners = dups.drop_duplicates("sku", keep="last").set_index("sku")["row_number"]
        losers = dups.index[~dups.index.isin(dups.drop_duplicates("sku", keep="last").index)]
        out.loc[losers, "reason"] = [
            f"duplicate supplier_sku (row {winners[s]} kept)" for s in out.loc[losers, "sku"].tolist()
        ]
    return out


# --- mapping snapshot -------------------------------------------------------------------------

_MAPPING_COLUMNS = ["mapping_id", "sku", "item_id", "status", "last_qty", "fingerprint_old", "seen_epoch"]


_MAPPINGS_SQL = """
SELECT string_agg(
           concat_ws(',', id, '"' || replace(supplier_sku, '"', '""') || '"', COALESCE(item_id::text, ''), status,
                     COALESCE(last_reported_qty::text, ''), '"' || replace(fingerprint, '"', '""') || '"',
                     COALESCE(extract(epoch FROM last_seen_at)::text, '')),
           E'\\n')
  FROM suppliers_supplierproduct
 WHERE supplier_id = %s
"""


def _load_mappings(supplier: Supplier) -> pd.DataFrame:
    """The supplier's whole mapping table as a frame.

    The database renders it as one CSV text value: a million rows arrive in one message
    instead of a million, which is most of the cost of reading them.
    """
    with connection.cursor() as cursor:
        cursor.execute(_MAPPINGS_SQL, [supplier.pk])
        (text,) = cursor.fetchone()
    if not text:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in _MAPPING_COLUMNS})
    data = text.encode()
    del text  # a StringIO would hold it as 4 bytes per character
    frame = pd.read_csv(
        io.BytesIO(data),
        header=None,
        names=_MAPPING_COLUMNS,
        dtype={"sku": str, "status": "category", "fingerprint_old": "category"},
        keep_default_na=False,
        na_values={"item_id": [""], "last_qty": [""], "seen_epoch": [""]},
    )
    frame["last_qty"] = frame["last_qty"].astype("float64")
    frame["seen_epoch"] = frame["seen_epoch"].astype("float64")
    return frame


def _attach_mappings(rows: pd.DataFrame, mappings: pd.DataFrame) -> pd.DataFrame:
    """A left join of feed rows onto the mappings by SKU (unique per supplier), twice as fast as a merge."""
    positions = pd.Index(mappings["sku"]).get_indexer(rows["sku"]) if len(mappings) else np.full(len(rows), -1)
    missing = positions < 0
    merged = rows.copy(deep=False)
    for column in ("mapping_id", "item_id", "last_qty", "seen_epoch"):
        values = mappings[column].to_numpy(dtype="float64")[positions] if len(mappings) else np.full(len(rows), np.nan)
        values[missing] = np.nan
        merged[column] = values
    for column in ("status", "fingerprint_old"):
        if len(mappings):
            source = mappings[column].astype("category")
            codes = source.cat.codes.to_numpy()[positions]
            codes[missing] = -1
            merged[column] = pd.Categorical.from_codes(codes, categories=source.cat.categories)
        else:
            merged[column] = pd.Categorical([None] * len(rows), categories=[""])
    return merged


def _copy_rows(cursor: Any, sql: str, rows: Iterable[Sequence[Any]]) -> None:
    with cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(row)


# --- the run ------------------------------------------------------------------------------------


def _ingest_parsed(*, supplier: Supplier, run: FeedRun, parsed: ParsedFeed, full: bool, step: Progress) -> int:
    settings = supplier.settings or {}
    threshold = float(settings.get("reject_threshold", DEFAULT_REJECT_THRESHOLD))
    max_quantity = float(settings.get("max_quantity", DEFAULT_MAX_QUANTITY))
    now = timezone.now()
    rows = validate(
        parsed.frame,
        now=pd.Timestamp(now),
        max_age=timedelta(minutes=supplier.max_age_minutes),
        max_quantity=max_quantity,
    )
    step("map")
    mappings = _load_mappings(supplier)
    merged = _attach_mappings(rows, mappings)
    del rows
    good = merged["reason"] == ""
    unknown = good & merged["mapping_id"].isna()
    unmapped = good & (merged["status"] == SupplierProduct.Status.UNMAPPED)
    merged.loc[unknown | unmapped, "reason"] = UNMAPPED_REASON
    bad = merged["reason"] != ""
    # A clean feed (the usual case) is not copied: accepted is the merged frame itself.
    accepted = merged.loc[~bad] if bad.any() else merged
    quarantined = merged.loc[bad]
    run.rows_read = parsed.rows_read
    run.rows_accepted = len(accepted)
    run.rows_quarantined = len(quarantined) + len(parsed.quarantined)
    assert run.rows_read == run.rows_accepted + run.rows_quarantined
    # Unknown SKUs are quarantined but are not garbage: a supplier may list far more than we sell.
    invalid = run.rows_quarantined - int((unknown | unmapped).sum())
    matched = int(accepted["status"].eq(SupplierProduct.Status.ACTIVE).sum()) if len(accepted) else 0
    refusal = ""
    if run.rows_read == 0 and full:
        refusal = "empty feed: a full feed with no rows would take every item off sale"
    elif run.rows_read and invalid / run.rows_read > threshold:
        refusal = (
            f"{invalid} of {run.rows_read} rows invalid ({invalid / run.rows_read:.0%} > {threshold:.0%}); "
            "last good data kept"
        )
    elif full and matched == 0 and (mappings["status"] == SupplierProduct.Status.ACTIVE).any():
        refusal = "no row matches a mapped supplier SKU: wrong file? last good data kept"

    step("apply")
    started = time.perf_counter()
    with transaction.atomic():
        with connection.cursor() as cursor:
            _store_quarantined(cursor, run, parsed.quarantined, quarantined, parsed.frame)
        parsed.frame = parsed.frame.iloc[0:0]  # the raw text is no longer needed: free it before the writes
        if refusal:
            run.rows_changed = 0
            _close(run, FeedRun.Status.REFUSED, refusal)
            incident_open(
                kind=Incident.Kind.FEED_REFUSED,
                location_id=supplier.location_id,
                reference=feed_run_reference(run.pk),
                detail=f"Feed from {supplier.code} refused: {refusal}.",
            )
            supplier_health_record(supplier=supplier, ok=False, error=refusal)
            return 0
        moved = _apply(
            supplier=supplier,
            run=run,
            merged=merged,
            accepted=accepted,
            mappings=mappings,
            parse_quarantined=parsed.quarantined,
            full=full,
            now=now,
        )
        _close(run, FeedRun.Status.SUCCEEDED, "")
        was_sellable = supplier.location.stock_valid_until is not None and supplier.location.stock_valid_until > now
        supplier.location.stock_valid_until = now + timedelta(minutes=supplier.max_age_minutes)
        supplier.location.save(update_fields=["stock_valid_until"])
        if supplier.is_stale or not was_sellable:
            # Unchanged rows were selling 0 while stale: every item at the location sells again.
            location_validity_changed(location=supplier.location, reason="supplier_feed_fresh")
        supplier_health_record(supplier=supplier, ok=True, stale=False)
    log.debug("feed_applied", seconds=round(time.perf_counter() - started, 3))
    return moved


def _close(run: FeedRun, status: str, error: str) -> None:
    run.status = status
    run.error = error
    run.finished_at = timezone.now()
    run.save(
        update_fields=[
            "status",
            "error",
            "finished_at",
            "rows_read",
            "rows_accepted",
            "rows_quarantined",
            "rows_changed",
        ]
    )


def _store_quarantined(
    cursor: Any, run: FeedRun, parse_quarantined: list[dict[str, Any]], bad: pd.DataFrame, frame: pd.DataFrame
) -> None:
    if not parse_quarantined and bad.empty:
        return
    raw_columns = [c for c in frame.columns if c != "row_number"]
    raw_rows = frame.set_index("row_number").loc[bad["row_number"].to_numpy(), raw_columns]
    raw_text = [
        json.dumps(dict(zip(raw_columns, values, strict=True)), ensure_ascii=False)[:2000]
        for values in raw_rows.itertuples(index=False, name=None)
    ]

    def rows() -> Iterable[tuple[Any, ...]]:
        for item in parse_quarantined:
            yield (run.pk, item["row_number"], item["supplier_sku"], item["raw"], item["reason"][:300])
        for number, sku, reason, text in zip(
            bad["row_number"].tolist(),
            bad["sku"].tolist(),
            bad["reason"].tolist(),
            raw_text,
            strict=True,
        ):
            yield (run.pk, int(number), str(sku)[:200], text, reason[:300])

    table = QuarantinedRow._meta.db_table
    _copy_rows(cursor, f"COPY {table} (run_id, row_number, supplier_sku, raw, reason) FROM STDIN", rows())


def _apply(
    *,
    supplier: Supplier,
    run: FeedRun,
    merged: pd.DataFrame,
    accepted: pd.DataFrame,
    mappings: pd.DataFrame,
    parse_quarantined: list[dict[str, Any]],
    full: bool,
    now: Any,
) -> int:
    qty_changed = accepted["last_qty"].isna() | (accepted["qty"].round(6) != accepted["last_qty"].round(6))
    if (accepted["fingerprint"] == "").all():
        fp_changed = pd.Series(False, index=accepted.index)  # no listing columns in this feed
    else:
        old_fp = accepted["fingerprint_old"].astype(object).fillna("")
        fp_changed = (accepted["fingerprint"] != "") & (accepted["fingerprint"] != old_fp)
    now_epoch = now.timestamp()
    seen_old = accepted["seen_epoch"].isna() | (accepted["seen_epoch"] < now_epoch - SEEN_RESOLUTION.total_seconds())
    touched = accepted.loc[qty_changed | fp_changed | seen_old]
    run.rows_changed = int(qty_changed.sum())
    affected_items: set[int] = {int(i) for i in accepted.loc[qty_changed, "item_id"].tolist()}
    off_sale: set[int] = set()  # items whose mapping this run took off sale (vanished, listing changed)
    with connection.cursor() as cursor:
        # Unknown SKUs become unmapped mappings so that staff can map them (the validation job counts them).
        unknown = merged.loc[merged["mapping_id"].isna() & (merged["reason"] == UNMAPPED_REASON), "sku"]
        if len(unknown):
            cursor.execute(
                "CREATE TEMPORARY TABLE feed_unknown (sku text) ON COMMIT DROP",
            )
            _copy_rows(cursor, "COPY feed_unknown (sku) FROM STDIN", ((s,) for s in unknown.unique().tolist()))
            cursor.execute(
                """
                INSERT INTO suppliers_supplierproduct
                       (supplier_id, supplier_sku, item_id, units_per_pack, unit_factor, lead_time_days, moq, status,
                        last_seen_at, fingerprint, confirmed_fingerprint, status_reason, created_at, updated_at)
                SELECT %(supplier)s, sku, NULL, 1, 1, 0, 1, 'unmapped', now(), '', '',
                       'seen in feed run ' || %(run)s::text, now(), now()
                  FROM feed_unknown
                ON CONFLICT (supplier_id, supplier_sku) DO UPDATE SET last_seen_at = now()
                """,
                {"supplier": supplier.pk, "run": run.pk},
            )
            cursor.execute("DROP TABLE feed_unknown")
        if len(touched):
            cursor.execute(
                "CREATE TEMPORARY TABLE feed_snapshot (id bigint, qty numeric(20,6), fingerprint text) ON COMMIT DROP"
            )
            _copy_rows(
                cursor,
                "COPY feed_snapshot (id, qty, fingerprint) FROM STDIN",
                zip(
                    touched["mapping_id"].astype("int64").tolist(),
                    [f"{q:.6f}" for q in touched["qty"].tolist()],
                    [
                        new if new else (old if isinstance(old, str) else "")
                        for new, old in zip(touched["fingerprint"], touched["fingerprint_old"], strict=True)
                    ],
                    strict=True,
                ),
            )
            cursor.execute(
                """
                UPDATE suppliers_supplierproduct sp
                   SET last_reported_qty = f.qty, fingerprint = f.fingerprint, last_seen_at = now(), updated_at = now()
                  FROM feed_snapshot f
                 WHERE sp.id = f.id
                """
            )
            cursor.execute("DROP TABLE feed_snapshot")
        if full and len(mappings):
            active = mappings.loc[mappings["status"] == SupplierProduct.Status.ACTIVE]
            # A SKU is gone only when no row names it: a quarantined row that may name it (anywhere in a
            # line of the wrong width, an item of the wrong shape) says nothing sure about its stock, so
            # it neither vanishes nor changes.
            quarantined = list({str(v).strip() for r in parse_quarantined for v in r.get("named", [r["supplier_sku"]])})
            gone = active.loc[
                ~active["mapping_id"].isin(merged["mapping_id"].dropna().to_numpy()) & ~active["sku"].isin(quarantined)
            ]
            if len(gone):
                ids = gone["mapping_id"].astype("int64").tolist()
                cursor.execute(
                    """
                    UPDATE suppliers_supplierproduct
                       SET status = 'vanished', status_reason = %(why)s, updated_at = now()
                     WHERE id = ANY(%(ids)s) AND status = 'active'
                    RETURNING item_id
                    """,
                    {"ids": ids, "why": f"missing from feed run {run.pk}"},
                )
                off_sale.update(row[0] for row in cursor.fetchall())
    from apps.suppliers.services.mappings import mapping_fingerprints_check, supplier_targets

    if bool((accepted["fingerprint"] != "").any()):  # the feed carries listing columns
        off_sale.update(mapping_fingerprints_check(supplier=supplier, reason=f"listing changed (feed run {run.pk})"))
    # Stock falling under the feed run's reference is the supplier selling elsewhere (the forecast
    # learns its supplier safety stock from it); mappings taken off sale are not sales.
    moved = 0
    for items, reference in (
        (affected_items - off_sale, feed_run_reference(run.pk)),
        (off_sale, f"supplier:{supplier.code}:mapping off sale (feed run {run.pk})"),
    ):
        if items:
            moved += len(
                supplier_levels_set(
                    location=supplier.location,
                    targets=supplier_targets(supplier=supplier, item_ids=sorted(items)),
                    reference=reference,
                    actor=f"supplier:{supplier.code}",
                )
            )
    return moved
