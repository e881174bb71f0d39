"""Create an API token from the server's shell.

Who may have a staff user's token follows the rule of the admin (``token_owner_allowed``): with
``--as USERNAME`` the command acts as that user and is refused what they could not do there.
Without it, the person at the server's shell is the operator (who can read the database and the
settings anyway): a token for a non-superuser is made, one for a superuser only with ``--operator``
said explicitly, so that a slip of the username never mints full rights.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.errors import DomainError
from apps.core.services import token_create


class Command(BaseCommand):
    help = "Create an API token for a staff user or a channel and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        owner = parser.add_mutually_exclusive_group(required=True)
        owner.add_argument("--staff", metavar="USERNAME", help="a staff user's username")
        owner.add_argument("--channel", metavar="CODE", help="a channel's code")
        parser.add_argument("--name", default="", help="a label to tell tokens apart")
        acting = parser.add_mutually_exclusive_group()
        acting.add_argument(
            "--as",
            dest="acting",
            metavar="USERNAME",
            help="act as this user: refused unless they may create the token in the admin",
        )
        acting.add_argument(
            "--operator",
            action="store_true",
            help="act as the server's operator; needed for a superuser's token when --as is not given",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        by = None
        if options["acting"]:
            by = get_user_model().objects.filter(username=options["acting"], is_active=True).first()
            if by is None:
                raise CommandError(f"No active user named {options['acting']!r} to act as.")
        elif options["staff"] and not options["operator"]:
            owner = get_user_model().objects.filter(username=options["staff"]).first()
            if owner is not None and owner.is_superuser:
                raise CommandError(
                    f"{options['staff']!r} is a superuser: say --operator to mint a token with every right, "
                    "or --as USERNAME to act as a user."
                )
        try:
            raw = token_create(
                staff_username=options["staff"], channel_code=options["channel"], name=options["name"], by=by
            )
        except DomainError as err:
            raise CommandError(str(err.detail)) from err
        owner_name = f"staff user {options['staff']}" if options["staff"] else f"channel {options['channel']}"
        self.stderr.write(f"New token for {owner_name}. It is shown only now; store it safely:")
        self.stdout.write(raw)
