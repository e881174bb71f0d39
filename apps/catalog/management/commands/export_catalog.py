"""`manage.py export_catalog PATH`: write items, products, locations and listings as CSV files or a workbook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.catalog.catalog_io.files import CatalogFileError, write_catalog
from apps.catalog.catalog_io.tables import kinds_in_order


class Command(BaseCommand):
    help = (
        "Export the catalog to PATH: a folder (created if needed) gets locations.csv, items.csv, products.csv "
        "and listings.csv; a path ending in .xlsx gets one workbook with a sheet per kind. "
        "`import_catalog PATH` reads either back unchanged."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--kind", action="append", help="Only this kind (repeatable): locations, items...")

    def handle(self, *args: Any, **options: Any) -> None:
        kinds = kinds_in_order()
        if options["kind"]:
            unknown = set(options["kind"]) - {kind.name for kind in kinds}
            if unknown:
                raise CommandError(f"unknown kind(s) {', '.join(sorted(unknown))}")
            kinds = [kind for kind in kinds if kind.name in options["kind"]]
        try:
            counts = write_catalog(options["path"], kinds)
        except CatalogFileError as err:
            raise CommandError(str(err)) from err
        if not options["verbosity"]:
            return
        for name, count in counts.items():
            self.stdout.write(f"{name}: {count} row(s)")
        self.stdout.write(self.style.SUCCESS(f"Exported to {options['path']}."))
