"""`manage.py import_feed --supplier CODE PATH`: take in one feed file now, with a progress bar."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from apps.suppliers.limits import FeedTooLarge, feed_max_bytes, feed_size_check
from apps.suppliers.models import FeedRun, Supplier
from apps.suppliers.services.polling import feed_import_file, feed_refuse

_CHUNK = 1024 * 1024
_STAGES = ("read", "validate", "map", "apply", "done")


class Command(BaseCommand):
    help = "Run a supplier file feed (CSV or XML) synchronously and print the run summary; exits 2 when refused."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--supplier", required=True, help="Supplier code")
        parser.add_argument("path", help="Feed file (.csv, .xml or .json)")
        parser.add_argument("--format", choices=["csv", "xml", "json"], help="Override the format from the file name")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (for logs)")

    def handle(self, *args: Any, **options: Any) -> None:
        supplier = Supplier.objects.select_related("location").filter(code=options["supplier"]).first()
        if supplier is None:
            raise CommandError(f"No supplier with code {options['supplier']!r}.")
        path = Path(options["path"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        quiet = options["no_progress"]
        try:
            raw = self._read(path, limit=feed_max_bytes(supplier.settings.get("max_bytes")), quiet=quiet)
        except FeedTooLarge as err:
            self._report(feed_refuse(supplier=supplier, source=f"file:{path.name}", reason=str(err)))
            return
        with tqdm(total=len(_STAGES), desc="ingesting", disable=quiet, file=self.stderr) as bar:

            def progress(stage: str) -> None:
                bar.set_postfix_str(stage)
                bar.update(1)

            run = feed_import_file(supplier=supplier, raw=raw, name=path.name, fmt=options["format"], progress=progress)
        self._report(run)

    def _read(self, path: Path, *, limit: int, quiet: bool) -> bytes:
        """The whole file, its size checked before the first byte is read and again while reading."""
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            feed_size_check(size, limit=limit, name=path.name)
            buffer = io.BytesIO()
            with tqdm(total=size, unit="B", unit_scale=True, desc="reading", disable=quiet, file=self.stderr) as bar:
                while chunk := handle.read(_CHUNK):
                    buffer.write(chunk)
                    feed_size_check(buffer.tell(), limit=limit, name=path.name)
                    bar.update(len(chunk))
        return buffer.getvalue()

    def _report(self, run: FeedRun) -> None:
        duration = run.duration.total_seconds() if run.duration else 0.0
        self.stdout.write(
            f"run {run.pk} {run.status}: read {run.rows_read}, accepted {run.rows_accepted}, "
            f"changed {run.rows_changed}, quarantined {run.rows_quarantined} in {duration:.2f}s"
        )
        if run.error:
            self.stdout.write(f"reason: {run.error}")
        for row in run.quarantined.order_by("row_number")[:10]:
            self.stdout.write(f"  row {row.row_number} {row.supplier_sku!r}: {row.reason}")
        if run.rows_quarantined > 10:
            self.stdout.write(f"  ... and {run.rows_quarantined - 10} more quarantined rows (see the admin or the API)")
        if run.status != FeedRun.Status.SUCCEEDED:
            raise SystemExit(2 if run.status == FeedRun.Status.REFUSED else 1)
