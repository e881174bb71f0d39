from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.errors import NotFound
from apps.core.services import token_create


class Command(BaseCommand):
    help = "Create an API token for a staff user or a channel and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        owner = parser.add_mutually_exclusive_group(required=True)
        owner.add_argument("--staff", metavar="USERNAME", help="a staff user's username")
        owner.add_argument("--channel", metavar="CODE", help="a channel's code")
        parser.add_argument("--name", default="", help="a label to tell tokens apart")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            raw = token_create(staff_username=options["staff"], channel_code=options["channel"], name=options["name"])
        except NotFound as err:
            raise CommandError(str(err)) from err
        owner = f"staff user {options['staff']}" if options["staff"] else f"channel {options['channel']}"
        self.stderr.write(f"New token for {owner}. It is shown only now; store it safely:")
        self.stdout.write(raw)
