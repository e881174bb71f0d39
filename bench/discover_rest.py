"""Discovering and matching 10,000 variants on the WooCommerce and Amazon fakes, beside a raw limit.

Standalone: needs REDIS_URL and a DATABASE_URL for Django's settings (``make bench`` resolves them;
no database is written: the connectors never touch it). Each platform gets its own fake on loopback,
seeded with ``n`` variants and the problem classes of a real catalog, then:

- WooCommerce: ``catalog()`` reads products 100 a page and each variable product's variations (OAuth 1.0a
  signed requests, as over plain HTTP). Raw limit: the same pages fetched by plain signed GETs in a loop
  on one keep-alive session, nothing parsed beyond JSON (the better of two passes).
- Amazon: ``catalog()`` creates the merchant listings report, polls it (the fake makes it in
  ``REPORT_S``; Amazon takes minutes, which no client can shorten), fetches the document and parses it.
  Raw limit: the fake's report time plus one plain GET of the same document, gunzipped and split in lines.

Then both match the catalog by SKU against the product codes of a Stockroom holding 90 % of them (the
link rules: a SKU that is a product code matches; no SKU, a SKU on two variants, an untracked or an
Amazon-fulfilled variant is a problem). Prints time, requests, variants/s, the raw limit and the ratio
(median of ``--runs``), and writes var/bench/discover_rest.json.

    python bench/discover_rest.py --variants 10000 --runs 3
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_database_url, django_setup, rows_write

REPORT_S = 0.5  # how long the Amazon fake takes to make the report


def setup() -> None:
    """Django settings (the connectors read their tunables and Redis from them), once."""
    if os.environ.get("DJANGO_SETTINGS_MODULE") and "django" in sys.modules:
        from django.conf import settings

        if settings.configured:
            return
    django_setup(base_database_url(), CACHE_KEY_PREFIX="bench-discover", CELERY_KEY_PREFIX="bench-discover-")


def match(entries: list[Any], codes: set[str]) -> dict[str, int]:
    """The link preview's buckets, by SKU: matched, platform_only, and each problem by its code."""
    counts = Counter(entry.sku for entry in entries if entry.sku)
    found: Counter[str] = Counter()
    for entry in entries:
        if not entry.sku:
            found["no_sku"] += 1
        elif counts[entry.sku] > 1:
            found["duplicate_sku"] += 1
        elif entry.platform_managed:
            found["platform_managed"] += 1
        elif not entry.tracked:
            found["untracked"] += 1
        elif entry.sku in codes:
            found["matched"] += 1
        else:
            found["platform_only"] += 1
    return dict(found)


def stockroom_codes(skus: list[str]) -> set[str]:
    """The products Stockroom has: 90 % of the platform's SKUs (the rest are platform-only)."""
    unique = sorted({sku for sku in skus if sku})
    return {sku for index, sku in enumerate(unique) if index % 10 != 9}


def discover_woocommerce(n: int = 10_000) -> dict[str, Any]:
    """Seed the WooCommerce fake with ``n`` variants, discover and match them; the figures of one run."""
    setup()
    import requests

    from apps.channels.connectors.base import ChannelRef
    from apps.channels.connectors.woocommerce import WooCommerceConnector, oauth_signature
    from apps.channels.fakes.woocommerce import WooCommerceFake

    fake = WooCommerceFake().start()
    try:
        problems = max(1, n // 100)
        seeded = fake.seed_catalog(
            n,
            per_parent=6,
            simple_every=4,
            no_sku=problems,
            duplicate_sku=problems,
            untracked=2 * problems,
            parent_stock=problems,
        )
        channel = ChannelRef(id=1, code="web", settings=fake.channel_settings(), credentials=fake.channel_credentials())
        connector = WooCommerceConnector()
        started = time.perf_counter()
        catalog = connector.catalog(channel)
        read_s = time.perf_counter() - started
        matched = match(catalog.entries, stockroom_codes([s.sku for s in seeded]))
        total_s = time.perf_counter() - started
        assert len(catalog.entries) == n, (len(catalog.entries), n)

        # Raw: the same GETs, signed, on one session, nothing done with the answers but JSON.
        pages = [
            (r["path"], {k: v for k, v in r["query"].items() if not k.startswith("oauth_")}) for r in fake.requests()
        ]
        session = requests.Session()
        passes = []
        for _ in range(2):  # the better of two passes: the machine is shared, the limit is the best it does
            raw_started = time.perf_counter()
            for path, query in pages:
                url = fake.url + path
                oauth = [
                    ("oauth_consumer_key", fake.consumer_key),
                    ("oauth_nonce", uuid.uuid4().hex),
                    ("oauth_signature_method", "HMAC-SHA256"),
                    ("oauth_timestamp", str(int(time.time()))),
                ]
                params = [*query.items(), *oauth]
                signature = oauth_signature("GET", url, params, fake.consumer_secret, "HMAC-SHA256")
                response = session.get(url, params=[*params, ("oauth_signature", signature)], timeout=30)
                assert response.status_code == 200, response.text[:200]
                response.json()
            passes.append(time.perf_counter() - raw_started)
        raw_s = min(passes)
    finally:
        fake.stop()
    return {
        "platform": "woocommerce",
        "variants": n,
        "seconds": total_s,
        "read_seconds": read_s,
        "requests": catalog.requests,
        "variants_per_s": n / total_s,
        "raw_seconds": raw_s,
        "ratio": total_s / raw_s,
        "matched": matched,
    }


def discover_amazon(n: int = 10_000) -> dict[str, Any]:
    """Seed the Amazon fake with ``n`` listings, discover and match them; the figures of one run."""
    setup()
    import requests

    from apps.channels.connectors.amazon import AmazonConnector
    from apps.channels.connectors.base import ChannelRef
    from apps.channels.fakes.amazon import AmazonFake

    # A seller of its own per run: the connector's per-operation buckets (Redis) start full, as for a new channel.
    fake = AmazonFake(seller_id=f"ABENCH{uuid.uuid4().hex[:10].upper()}", report_processing_s=REPORT_S).start()
    try:
        seeded = fake.seed_listings(n, fba=max(1, n // 20), inactive=max(1, n // 50))
        config = fake.channel_settings()
        channel = ChannelRef(id=1, code="amazon", settings=config["settings"], credentials=config["credentials"])
        started = time.perf_counter()
        catalog = AmazonConnector().catalog(channel)
        read_s = time.perf_counter() - started
        matched = match(catalog.entries, stockroom_codes([s.sku for s in seeded]))
        total_s = time.perf_counter() - started
        assert len(catalog.entries) == n, (len(catalog.entries), n)

        (download,) = fake.requests("document")
        url = f"{fake.url}{download['path']}?X-Amz-Signature={download['query']['X-Amz-Signature'][0]}"
        raw_started = time.perf_counter()
        response = requests.get(url, timeout=30)
        lines = gzip.decompress(response.content).decode("cp1252").splitlines()
        raw_s = REPORT_S + time.perf_counter() - raw_started
        assert len(lines) == n + 1
    finally:
        fake.stop()
    return {
        "platform": "amazon",
        "variants": n,
        "seconds": total_s,
        "read_seconds": read_s,
        "requests": catalog.requests,
        "variants_per_s": n / total_s,
        "raw_seconds": raw_s,
        "ratio": total_s / raw_s,
        "matched": matched,
    }


def machine() -> str:
    return (
        f"{platform.node() or 'host'}: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--platforms", default="woocommerce,amazon")
    args = parser.parse_args()

    benches = {"woocommerce": discover_woocommerce, "amazon": discover_amazon}
    rows: list[dict[str, Any]] = []
    print(f"command: python bench/discover_rest.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"machine: {machine()}\n")
    print("| platform | variants | time (s) | requests | variants/s | raw limit (s) | ratio | matching |")
    print("|---|---|---|---|---|---|---|---|")
    for name in [p.strip() for p in args.platforms.split(",") if p.strip()]:
        runs = [benches[name](args.variants) for _ in range(args.runs)]
        median = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
        seconds = statistics.median(r["seconds"] for r in runs)
        raw = statistics.median(r["raw_seconds"] for r in runs)
        print(
            f"| {name} | {args.variants} | {seconds:.2f} | {median['requests']} | {args.variants / seconds:.0f} | "
            f"{raw:.2f} | {seconds / raw:.2f} | {json.dumps(median['matched'], sort_keys=True)} |"
        )
        rows.append(
            {
                "name": f"discover {args.variants} variants on the {name} fake (s, median of {args.runs})",
                "figure": round(seconds, 3),
                "unit": "s",
                "raw": round(raw, 3),
                "ratio": round(seconds / raw, 2),
                "requests": median["requests"],
                "variants_per_s": round(args.variants / seconds, 1),
                "matched": median["matched"],
                "runs": [round(r["seconds"], 3) for r in runs],
            }
        )
    print(f"\nwritten {rows_write('discover_rest', rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
