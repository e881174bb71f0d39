"""A 1,000,000-row supplier feed end to end, beside plain SQL on the same file in the same run.

    DATABASE_URL=postgres://... REDIS_URL=redis://... python bench/ingest.py [--rows N] [--changed 0.05]

Creates (and drops first) its own database, migrates it, seeds N items with one supplier
mapping each, takes in a previous feed, then measures:

- ours: the real ingestion (``feed_ingest``) of the next feed, where a share of rows changed:
  read with pandas, validate, map, distrust, delta, bulk ledger write;
- plain SQL: ``COPY`` of the same file into a staging table plus ``INSERT ... ON CONFLICT``
  into a table already holding the previous feed (best of two runs);

and prints the ratio and the process's peak memory, and writes var/bench/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import base_database_url, database_recreate  # noqa: E402

BENCH_DATABASE = "stockroom_bench_ingest"


def _setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("CACHE_KEY_PREFIX", "bench-ingest")
    os.environ["DJANGO_SETTINGS_MODULE"] = "inventory_site.settings.base"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _write_feed(path: Path, skus: np.ndarray, quantities: np.ndarray, stamp: str) -> None:
    frame = pd.DataFrame({"supplier_sku": skus, "quantity": quantities, "updated_at": stamp})
    frame.to_csv(path, index=False)


def _seed(rows: int) -> Any:
    """N items and one supplier mapping per item, written with set-based SQL (seeding is not measured)."""
    from django.db import connection

    from apps.suppliers.models import Supplier
    from apps.suppliers.services.suppliers import supplier_create

    supplier = supplier_create(
        code="bench", name="Bench supplier", connector="folder", actor="bench", settings={"path": "/nonexistent"}
    )
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO catalog_item (sku, name, unit, safety_min, safety_max, is_active, created_at)
            SELECT 'BENCH-' || lpad(i::text, 7, '0'), 'Bench item ' || i, 'piece', 0, NULL, true, now()
              FROM generate_series(1, %s) AS i
            """,
            [rows],
        )
        cursor.execute(
            """
            INSERT INTO suppliers_supplierproduct
                   (supplier_id, supplier_sku, item_id, units_per_pack, unit_factor, lead_time_days, moq, status,
                    fingerprint, confirmed_fingerprint, status_reason, created_at, updated_at)
            SELECT %s, 'SUP-' || substr(sku, 7), id, 1, 1, 2, 1, 'active', '', '', '', now(), now()
              FROM catalog_item WHERE sku LIKE 'BENCH-%%'
            """,
            [supplier.pk],
        )
        cursor.execute("ANALYZE")
    return Supplier.objects.select_related("location").get(pk=supplier.pk)


def _vacuum(*tables: str) -> None:
    """Between two feeds (minutes apart) autovacuum has cleaned up after the previous one; do it now, for both sides."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {table}")


def _plain_sql(path: Path, previous: Path) -> float:
    """COPY into staging + INSERT ... ON CONFLICT into a table that already holds the previous feed."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_supplier_stock")
        cursor.execute(
            "CREATE TABLE bench_supplier_stock (supplier_sku text PRIMARY KEY, quantity numeric NOT NULL, "
            "updated_at timestamptz NOT NULL)"
        )
        for source in (previous, path):  # the first fills the table as the previous run did; the second is timed
            if source is path:
                _vacuum("bench_supplier_stock")
            started = time.perf_counter()
            cursor.execute("DROP TABLE IF EXISTS bench_staging")
            cursor.execute("CREATE UNLOGGED TABLE bench_staging (supplier_sku text, quantity text, updated_at text)")
            with (
                source.open("rb") as handle,
                cursor.copy("COPY bench_staging FROM STDIN WITH (FORMAT csv, HEADER true)") as copy,
            ):
                while chunk := handle.read(1 << 20):
                    copy.write(chunk)
            cursor.execute(
                """
                INSERT INTO bench_supplier_stock (supplier_sku, quantity, updated_at)
                SELECT supplier_sku, quantity::numeric, updated_at::timestamptz FROM bench_staging
                ON CONFLICT (supplier_sku) DO UPDATE SET quantity = EXCLUDED.quantity, updated_at = EXCLUDED.updated_at
                """
            )
            elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_staging")
    return elapsed


def _ingest(supplier: Any, path: Path) -> tuple[float, Any]:
    from apps.suppliers.services.ingest import feed_ingest

    started = time.perf_counter()
    run = feed_ingest(supplier=supplier, raw=path.read_bytes(), fmt="csv", source=f"file:{path.name}")
    return time.perf_counter() - started, run


def _measure_in_child(path: Path) -> dict:
    """The measured ingestion in a fresh process, so that its peak memory is its own (not the seeding's)."""
    env = dict(os.environ, BENCH_INGEST_CHILD="1")
    done = subprocess.run(
        [sys.executable, __file__, "--measure", str(path)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"measured run failed:\n{done.stdout}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child_measure(path: Path) -> None:
    import django

    django.setup()
    from apps.catalog.models import Movement
    from apps.suppliers.models import Supplier

    supplier = Supplier.objects.select_related("location").get(code="bench")
    movements_before = Movement.objects.count()
    baseline = _peak_mb()
    seconds, run = _ingest(supplier, path)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mb": _peak_mb(),
                "startup_mb": baseline,
                "status": run.status,
                "rows_read": run.rows_read,
                "rows_accepted": run.rows_accepted,
                "rows_quarantined": run.rows_quarantined,
                "rows_changed": run.rows_changed,
                "movements": Movement.objects.count() - movements_before,
            }
        )
    )


def _peak_mb() -> float:
    """Peak resident memory of this process since it started (VmHWM; ru_maxrss would include the parent's at fork)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changed", type=float, default=0.05, help="share of rows changed against the previous feed")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "ingest.json")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: the measured child process
    args = parser.parse_args()
    if args.measure:
        _child_measure(args.measure)
        return

    url = database_recreate(base_database_url(), BENCH_DATABASE)
    _setup_django(url)
    from django.db import connection

    work = args.out.parent
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(42)
    skus = np.char.add("SUP-", np.char.zfill(np.arange(1, args.rows + 1).astype(str), 7))
    before = rng.integers(0, 500, size=args.rows)
    after = before.copy()
    changed = rng.choice(args.rows, size=int(args.rows * args.changed), replace=False)
    after[changed] = (after[changed] + rng.integers(1, 100, size=len(changed))) % 1000
    stamp = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    previous, current = work / "ingest-previous.csv", work / "ingest-current.csv"
    _write_feed(previous, skus, before, stamp)
    _write_feed(current, skus, after, stamp)
    del skus, before, after

    print(f"seeding {args.rows:,} items and mappings ...", flush=True)
    supplier = _seed(args.rows)
    print("previous feed (initial load, every row new) ...", flush=True)
    initial_s, initial = _ingest(supplier, previous)
    print(
        f"  {initial.status}: {initial.rows_accepted:,} accepted, {initial.rows_changed:,} changed in {initial_s:.1f}s"
    )

    _vacuum("catalog_stocklevel", "catalog_movement", "suppliers_supplierproduct")
    print("measured: next feed through the real ingestion (in a fresh process) ...", flush=True)
    child = _measure_in_child(current)
    ours_s, movements = child["seconds"], child["movements"]
    print(
        f"  {child['status']}: {child['rows_read']:,} read, {child['rows_changed']:,} changed, "
        f"{movements:,} movements, {ours_s:.2f}s, peak {child['peak_mb']:.0f} MB"
    )

    print("measured: plain COPY + INSERT ... ON CONFLICT of the same file (best of 2) ...", flush=True)
    plain_s = min(_plain_sql(current, previous) for _ in range(2))
    ratio = ours_s / plain_s
    peak = child["peak_mb"]
    print(f"  plain SQL {plain_s:.2f}s")
    print()
    print(
        f"feed of {args.rows:,} rows ({len(changed):,} changed): {ours_s:.2f}s end to end vs {plain_s:.2f}s plain SQL"
    )
    print(f"ratio {ratio:.2f}x (target <= 2x); peak memory {peak:.0f} MB (target < 1024 MB)")
    print(f"bench process peak (seeding and initial load of every row included): {_peak_mb():.0f} MB")
    assert child["status"] == "succeeded" and child["rows_read"] == child["rows_accepted"] + child["rows_quarantined"]

    result = {
        "benchmark": "ingest",
        "rows": [
            {
                "name": "supplier feed end to end",
                "figure": round(ours_s, 3),
                "unit": "s",
                "raw": round(plain_s, 3),
                "raw_name": "COPY into staging + INSERT ... ON CONFLICT of the same file",
                "ratio": round(ratio, 3),
                "target": "ratio <= 2",
                "feed_rows": args.rows,
                "rows_changed": child["rows_changed"],
                "movements": movements,
            },
            {
                "name": "supplier feed throughput",
                "figure": round(args.rows / ours_s),
                "unit": "rows/s",
                "raw": round(args.rows / plain_s),
                "ratio": round(plain_s / ours_s, 3),
            },
            {
                "name": "peak memory of the measured ingestion process (Django included)",
                "figure": round(peak),
                "unit": "MB",
                "raw": None,
                "ratio": None,
                "target": "< 1024",
            },
            {
                "name": "initial load (every row new)",
                "figure": round(initial_s, 3),
                "unit": "s",
                "raw": None,
                "ratio": None,
                "rows_changed": initial.rows_changed,
            },
        ],
        "database": connection.settings_dict["NAME"],
        "cpu_count": os.cpu_count(),
        "measured_at": datetime.now(UTC).isoformat(),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    for path in (previous, current):
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
