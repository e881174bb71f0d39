"""Run the Amazon SP-API fake: `manage.py fake_amazon --port 8503 --listing SOCK-3PK=12 --listing MUG=4`."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sandbox.fakes.amazon import AmazonFake


class Command(BaseCommand):
    help = (
        "Serve Amazon's Selling Partner API and Login with Amazon on loopback (tests, demo, benchmarks). "
        "Control it over HTTP: GET /_control/state, PUT /_control/listings/<sku> {quantity, product_type}, "
        "POST /_control/orders {lines: [{sku, quantity}], status}, "
        "POST /_control/orders/<id>/ship|cancel|status|delete, POST /_control/orders/<id>/change {sku, quantity}, "
        "POST /_control/outage {on}, POST /_control/expire-tokens, POST /_control/seed {count, fba, inactive, prefix}, "
        "POST /_control/fail-reports {outcome, count}."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8503)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--seller-id", default="A1STOCKROOMFAKE")
        parser.add_argument("--marketplace-id", default="ATVPDKIKX0DER")
        parser.add_argument("--client-id", default="amzn1.application-oa2-client.stockroom")
        parser.add_argument("--client-secret", default="fake-client-secret")
        parser.add_argument("--refresh-token", default="Atzr|fake-refresh-token")
        parser.add_argument("--token-lifetime", type=float, default=3600.0, help="seconds an access token lives")
        parser.add_argument("--feed-processing", type=float, default=0.5, help="seconds until a feed is processed")
        parser.add_argument(
            "--listing",
            action="append",
            default=[],
            metavar="SKU=QTY",
            help="a merchant-fulfilled listing (repeatable)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        fake = AmazonFake(
            seller_id=options["seller_id"],
            marketplace_id=options["marketplace_id"],
            client_id=options["client_id"],
            client_secret=options["client_secret"],
            refresh_token=options["refresh_token"],
            token_lifetime_s=options["token_lifetime"],
            feed_processing_s=options["feed_processing"],
            host=options["host"],
            port=options["port"],
        )
        for spec in options["listing"]:
            sku, sep, quantity = spec.rpartition("=")
            if not sep or not sku or not quantity.isdigit():
                raise CommandError(f"--listing takes SKU=QTY, not {spec!r}")
            fake.add_listing(sku, int(quantity))
        self.stdout.write(f"Amazon SP-API fake on {fake.url} (token endpoint {fake.token_url})")
        self.stdout.write("channel connector 'amazon' with: " + json.dumps(fake.channel_settings()))
        self.stdout.flush()
        try:
            fake.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            fake.stop()
