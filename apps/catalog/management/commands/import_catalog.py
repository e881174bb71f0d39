"""`manage.py import_catalog PATH`: load items, products, locations and listings from CSV or XLSX."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from apps.catalog.catalog_io.files import CatalogFileError, read_catalog
from apps.catalog.catalog_io.run import catalog_import

SHOWN_PROBLEMS = 200


class Command(BaseCommand):
    help = (
        "Import the catalog from PATH: a folder holding locations.csv, items.csv, products.csv and/or "
        "listings.csv (or .xlsx), one such file, or a workbook with a sheet per kind. Every row is checked "
        "first; any problem (printed with its row number) imports nothing and exits with status 1. "
        "Stock levels are never imported: on hand comes from the ledger."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--dry-run", action="store_true", help="Check and show what would change; write nothing.")
        parser.add_argument("--kind", help="The kind of a single CSV file not named after it (items, products...).")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (logs, cron).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tables = read_catalog(options["path"], kind=options["kind"])
        except CatalogFileError as err:
            raise CommandError(str(err)) from err
        bars: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if options["no_progress"]:
                return
            if stage not in bars:
                for bar in bars.values():
                    bar.close()
                bars[stage] = tqdm(total=total, desc=stage, unit="row", file=self.stderr._out, leave=False)
            bars[stage].update(done)

        plan = catalog_import(tables=tables, dry_run=options["dry_run"], progress=progress)
        for bar in bars.values():
            bar.close()
        problems = plan.problems
        for kind_plan in plan.kinds if options["verbosity"] else ():
            counts = ", ".join(f"{kind_plan.count(a)} {a}" for a in ("new", "update", "unchanged"))
            self.stdout.write(f"{kind_plan.table.source}: {counts}")
        if problems:
            for problem in problems[:SHOWN_PROBLEMS]:
                self.stderr.write(problem)
            if len(problems) > SHOWN_PROBLEMS:
                self.stderr.write(f"... and {len(problems) - SHOWN_PROBLEMS} more")
            raise CommandError(f"{len(problems)} problem(s); nothing was imported.", returncode=1)
        if not options["verbosity"]:
            return
        if options["dry_run"]:
            self.stdout.write(self.style.WARNING("Dry run: nothing was written."))
        else:
            self.stdout.write(self.style.SUCCESS("Imported."))
