"""Run a fake WooCommerce store: `manage.py fake_woocommerce --port 8502 --products 5 --webhook-url URL`."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sandbox.fakes.woocommerce import WooCommerceFake


class Command(BaseCommand):
    help = (
        "Serve a WooCommerce store on loopback (REST API wc/v3, signed order webhooks) for tests, the demo and "
        "benchmarks; drive it under /_fake/ (products, orders, webhook, fail, log, seed, webhooks)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8502)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--consumer-key", default=None, help="ck_...; a random one by default")
        parser.add_argument("--consumer-secret", default=None, help="cs_...; a random one by default")
        parser.add_argument("--webhook-url", default="", help="where order webhooks go")
        parser.add_argument("--webhook-secret", default="wh-secret")
        parser.add_argument("--products", type=int, default=0, help="start with this many products (WOO-1, ...)")
        parser.add_argument("--quantity", type=int, default=20, help="their starting stock")
        parser.add_argument("--tls-cert", default=None, help="serve HTTPS with this certificate file")
        parser.add_argument("--tls-key", default=None, help="... and this key file")

    def handle(self, *args: Any, **options: Any) -> None:
        tls = (options["tls_cert"], options["tls_key"]) if options["tls_cert"] else None
        store = WooCommerceFake(
            consumer_key=options["consumer_key"],
            consumer_secret=options["consumer_secret"],
            webhook_url=options["webhook_url"],
            webhook_secret=options["webhook_secret"],
            host=options["host"],
            port=options["port"],
            tls=tls,
        )
        products = {
            f"WOO-{n}": store.add_product(sku=f"WOO-{n}", stock_quantity=options["quantity"])
            for n in range(1, options["products"] + 1)
        }
        self.stdout.write(f"fake WooCommerce store on {store.url}")
        self.stdout.write("channel settings:    " + json.dumps(store.channel_settings()))
        self.stdout.write("channel credentials: " + json.dumps(store.channel_credentials()))
        if products:
            self.stdout.write("listing external ids: " + json.dumps({sku: str(pid) for sku, pid in products.items()}))
        self.stdout.flush()
        try:
            store.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            store.stop()
