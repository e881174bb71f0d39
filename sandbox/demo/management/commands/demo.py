"""`make run`'s demo process: a living shop while a person watches (local setup only)."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from apps.channels.models import Channel
from apps.core.models import ApiToken
from apps.core.services import token_create, token_revoke
from sandbox.demo.live import CHANNEL_RATES, LiveDemo
from sandbox.demo.past_weeks import demo_forecast_start
from sandbox.demo.receipts import demo_receipts_due

DEMO_TOKEN = "demo"


class Command(BaseCommand):
    help = "Run the living demo against the local web server (does nothing but wait when demo mode is off)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", default=f"http://127.0.0.1:{settings.STOCKROOM_PORT}")
        parser.add_argument("--pace", type=float, default=2.0, help="seconds between shoppers, on average")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--start-only",
            action="store_true",
            help="seed the weeks of history (demo mode) and compute the forecast, then exit without traffic",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        self._forecast_start()
        if options["start_only"]:
            return
        if not settings.STOCKROOM_DEMO_MODE:
            self.stdout.write("demo mode is off (STOCKROOM_DEMO_MODE=0): no simulated traffic")
            stop.wait()
            return
        if not self._wait_for(options["base_url"], stop):
            return
        demo = LiveDemo(
            base_url=options["base_url"],
            staff_token=self._staff_token(),
            channel_tokens=self._channel_tokens(),
            var_dir=settings.VAR_DIR,
            seed=options["seed"],
        )
        demo.wire()
        self.stdout.write(
            "demo running: "
            + ", ".join(f"{code} on {where}" for code, where in demo.channel_urls().items())
            + (f"; supplier feed {demo.acme.url}" if demo.acme else "")
        )
        if demo.platforms is not None:
            self.stdout.write(
                f"  Shopify order webhooks go to {demo.platforms.shopify.webhook_url}; "
                "Amazon's orders come in with the order poll (every minute)"
            )
        feeds = demo.first_polls()
        due = demo_receipts_due()
        self.stdout.write(
            "demo ready: first supplier feeds "
            + ", ".join(f"{code} {outcome}" for code, outcome in feeds.items())
            + f"; {due} deliveries due under Receipts (Receive books them)"
        )
        self.stdout.flush()
        try:
            demo.run(stop, pace_s=options["pace"])
        finally:
            demo.stop()

    def _forecast_start(self) -> None:
        """Before the shop opens: weeks of past trade (demo mode, once), then the forecast, so pages show numbers."""
        started = demo_forecast_start(seed_history=settings.STOCKROOM_DEMO_MODE)
        if started.history is not None and started.history.seeded:
            self.stdout.write(
                f"demo history: {started.history.weeks} weeks of till sales and online orders "
                f"({started.history.movements} ledger rows, balanced by weekly deliveries)"
            )
        hour = f"{started.at:%A %H}:00" if started.at else "this hour"
        self.stdout.write(
            f"forecast computed at start: {started.forecasts} slot forecasts; safety stock for {hour} set at "
            f"{started.safety_levels} levels, {started.safety_holding} of them holding back {started.safety_units} "
            f"units ({started.safety_changed} changed now; the tills' busy hours hold more, the night none); "
            f"{started.reorder_rules} reorder rules follow the forecast "
            '(make manage ARGS="recompute_safety" runs it again)'
        )

    def _wait_for(self, base_url: str, stop: threading.Event) -> bool:
        while not stop.is_set():
            try:
                if requests.get(f"{base_url}/healthz", timeout=2).status_code in (200, 503):
                    return True
            except requests.RequestException:
                pass
            time.sleep(1)
        return False

    def _staff_token(self) -> str:
        users = get_user_model().objects
        bot = users.filter(username="demo-bot").first() or users.create_user(username="demo-bot")
        if not (bot.is_staff and bot.is_superuser):  # API tokens carry their user's permissions
            bot.is_staff = bot.is_superuser = True
            bot.save(update_fields=["is_staff", "is_superuser"])
        for old in ApiToken.objects.filter(name=DEMO_TOKEN, revoked_at__isnull=True):
            token_revoke(token=old)
        return token_create(staff_username=bot.username, name=DEMO_TOKEN)

    def _channel_tokens(self) -> dict[str, str]:
        codes = Channel.objects.filter(code__in=list(CHANNEL_RATES)).values_list("code", flat=True)
        return {code: token_create(channel_code=code, name=DEMO_TOKEN) for code in codes}
