"""`manage.py reconcile_ledger`: compare the ledger with the levels now; exit 1 on drift."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.catalog.services.reconcile import ledger_reconcile


class Command(BaseCommand):
    help = "Compare SUM(movements) with every stock level; drift opens incidents. Exit status 1 on drift."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quiet", action="store_true", help="Print nothing when there is no drift.")

    def handle(self, *args: Any, **options: Any) -> None:
        report = ledger_reconcile()
        if report.ok:
            if not options["quiet"]:
                self.stdout.write(self.style.SUCCESS(report.lines()[0]))
            return
        for line in report.lines():
            self.stdout.write(self.style.ERROR(line) if line.startswith("  DRIFT") else line)
        sys.exit(1)
