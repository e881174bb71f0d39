"""Re-encrypt every stored secret under the first key of STOCKROOM_SECRETS_KEY.

To change the key: put the new key first and keep the old one after it (``NEW,OLD``), restart,
run this command, then drop the old key. Rows no configured key opens are named and left as they
are (enter those secrets again); every other row is rotated all the same.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.secrets import secrets_rotate


class Command(BaseCommand):
    help = "Re-encrypt every stored secret (channel credentials, push secrets, supplier secrets) under the first key."

    def handle(self, *args: Any, **options: Any) -> None:
        report = secrets_rotate()
        for column, count in report.rotated.items():
            self.stdout.write(f"{column}: {count} re-encrypted")
        self.stdout.write(f"Re-encrypted {sum(report.rotated.values())} secret(s) under the first key.")
        if report.unreadable:
            for row in report.unreadable:
                self.stderr.write(f"Unreadable with every configured key: {row}")
            raise CommandError(
                f"{len(report.unreadable)} secret(s) could not be read (listed above): enter them again, or add "
                "the key they were written with to STOCKROOM_SECRETS_KEY and run this again."
            )
