"""Prepare a database for `make run`: migrate, load the demo catalog once, and (locally) an admin."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from apps.catalog.models import Location

DEMO_FIXTURE = "demo_catalog"


class Command(BaseCommand):
    help = "Migrate, load the demo catalog on first run, create the local admin, and print where to look."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("database migrated")
        if settings.STOCKROOM_LOCAL_BOOTSTRAP and not Location.objects.exists():
            call_command("loaddata", DEMO_FIXTURE, verbosity=0)
            self.stdout.write(f"demo catalog loaded from fixtures/{DEMO_FIXTURE}.json")
        if settings.STOCKROOM_LOCAL_BOOTSTRAP:
            self._local_admin()
        base = f"http://127.0.0.1:{settings.STOCKROOM_PORT}"
        # The sandbox's example storefront is served by the local settings only, never in production.
        sandbox = [f"  demo storefront     {base}/demo/storefront/"] if settings.ROOT_URLCONF == "sandbox.urls" else []
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Stockroom is starting. Look here:",
                    f"  admin (merchants)   {base}/admin/",
                    f"  staff pages         {base}/staff/",
                    f"  API docs            {base}/api/v1/docs/",
                    f"  health check        {base}/healthz",
                    f"  metrics             {base}/metrics",
                    *sandbox,
                    "Press Ctrl-C to stop everything.",
                    "",
                ]
            )
        )

    def _local_admin(self) -> None:
        username = settings.STOCKROOM_ADMIN_USER
        password = settings.STOCKROOM_ADMIN_PASSWORD
        users = get_user_model().objects
        if not users.filter(username=username).exists():
            users.create_superuser(username=username, email=f"{username}@localhost", password=password)
            self.stdout.write(f"local admin created: log in as {username} / {password}")
        else:
            self.stdout.write(f"local admin: log in as {username} (password unchanged)")
