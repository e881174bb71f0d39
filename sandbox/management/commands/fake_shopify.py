"""Run the Shopify fake: `manage.py fake_shopify --port 8601 --token shpat_x --item SOCK=40 --webhook-url URL`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sandbox.fakes.shopify import ShopifyFake
from sandbox.fakes.shopify.seed import seed_catalog


class Command(BaseCommand):
    help = (
        "Serve a Shopify store on loopback: the GraphQL Admin API slice Stockroom speaks, under Shopify's cost "
        "model, with signed order webhooks (tests, benchmarks, demo). Control it under /_fake/ (state, items, "
        "quantity, orders, orders/<id>/cancel|fulfill|update, log)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8601)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--token", default="shpat_fake_token", help="the Admin API access token it accepts")
        parser.add_argument("--webhook-url", default="", help="where order webhooks are sent")
        parser.add_argument("--webhook-secret", default="", help="the key webhooks are signed with")
        parser.add_argument("--bucket", type=float, default=2000.0, help="maximumAvailable cost points")
        parser.add_argument("--restore", type=float, default=100.0, help="restoreRate, points per second")
        parser.add_argument(
            "--item", action="append", default=[], metavar="SKU=QTY", help="an item stocked at the location"
        )
        parser.add_argument(
            "--catalog",
            type=int,
            default=0,
            metavar="N",
            help="an existing shop of N variants (90%% clean, the rest untracked, without SKU, sharing a SKU, "
            "not stocked everywhere) with live quantities at --locations locations",
        )
        parser.add_argument("--locations", type=int, default=2, help="locations of the --catalog shop")

    def handle(self, *args: Any, **options: Any) -> None:
        fake = ShopifyFake(
            access_token=options["token"],
            webhook_url=options["webhook_url"],
            webhook_secret=options["webhook_secret"],
            maximum_available=options["bucket"],
            restore_rate=options["restore"],
            host=options["host"],
            port=options["port"],
        )
        for spec in options["item"]:
            sku, _, quantity = spec.partition("=")
            if not sku or not quantity.lstrip("-").isdigit():
                raise CommandError(f"--item takes SKU=QTY, not {spec!r}")
            self.stdout.write(f"  {sku}: {fake.add_item(sku, int(quantity))} available {quantity}")
        if options["catalog"]:
            each = options["catalog"] // 40  # 2.5 % of the variants in each problem class
            seeded = seed_catalog(
                fake,
                options["catalog"],
                locations=options["locations"],
                untracked=each,
                no_sku=each,
                duplicates=each - each % 2,
                not_stocked=each,
            )
            self.stdout.write(
                f"  {seeded.total} variants at {len(seeded.locations)} locations: {len(seeded.clean)} clean, "
                f"{len(seeded.untracked)} untracked, {len(seeded.no_sku)} without SKU, "
                f"{sum(len(v) for v in seeded.duplicates.values())} sharing a SKU, "
                f"{len(seeded.not_stocked)} stocked at the first location only"
            )
        self.stdout.write(
            f"Shopify fake on {fake.url} (location {fake.location_id}; bucket {options['bucket']:g} points, "
            f"restore {options['restore']:g}/s)"
        )
        self.stdout.flush()
        try:
            fake.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            fake.stop()
