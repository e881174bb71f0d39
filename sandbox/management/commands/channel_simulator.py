"""Run the channel simulator: `manage.py channel_simulator --port 8501 --rate 5 --burst 10 --secret s3cret`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sandbox.simulator import ChannelSimulator


class Command(BaseCommand):
    help = "Serve a channel on loopback that accepts signed pushes under a rate limit (tests, benchmarks, demo)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8501)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--rate", type=float, default=5.0, help="requests per second")
        parser.add_argument("--burst", type=int, default=10)
        parser.add_argument("--secret", default="", help="the channel's push secret")

    def handle(self, *args: Any, **options: Any) -> None:
        simulator = ChannelSimulator(
            rate=options["rate"],
            burst=options["burst"],
            secret=options["secret"],
            host=options["host"],
            port=options["port"],
        )
        self.stdout.write(f"channel simulator on {simulator.url} (rate {options['rate']}/s, burst {options['burst']})")
        self.stdout.flush()
        try:
            simulator.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            simulator.stop()
