"""No secret can be read back from anywhere a person or a log can see.

Every connector (the push protocol, Shopify with a token and with a client secret, WooCommerce over
plain HTTP and over HTTPS with the key in the query string, Amazon) and the supplier poller run
against hosts that fail: ones that answer an error whose body repeats the whole request (after
handing out tokens, or refusing everything), and ones where nothing listens. Each credential has a
distinctive value. Then the test reads everything a Viewer, an operator or a log reader could:

- every log line as the configured formatter writes it (DEBUG, so third-party lines with URLs too),
  and every record pytest captured at INFO and above, unformatted;
- every ``SyncWork.last_error`` and feed run error, the poll reports, the test-connection messages;
- every admin list and change page (of every registered model), the admin's test-connection answer;
- the API's channel, supplier and feed-run answers, ``/healthz`` and ``/metrics``;
- every text and JSON column of every table of the database.

None may hold any of the secrets, nor the tokens the hosts handed out.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import quote_plus

import pytest
import structlog
from django.contrib import admin
from django.db import connection, transaction
from django.urls import NoReverseMatch, reverse

from apps.catalog.signals import Tier
from apps.channels.models import Channel, SyncWork
from apps.channels.services.config import channel_create
from apps.channels.services.connection import channel_connection_test
from apps.channels.services.push import channel_push
from apps.channels.services.reconcile import channel_reconcile
from apps.channels.services.work import sync_work_enqueue
from apps.channels.tests.factories import listing, shop
from apps.core.tests.servers import Seen, closed_url, echo, http_server, self_signed
from apps.orders.services.intake import platform_orders_poll
from apps.suppliers.models import FeedRun, Supplier
from apps.suppliers.services.polling import supplier_poll
from apps.suppliers.tests.factories import make_supplier

pytestmark = pytest.mark.django_db(transaction=True)

PUSH_SECRET = "LeakPushSigningSecret01"
SHOPIFY_TOKEN = "shpat_LeakShopifyToken02"
SHOPIFY_WEBHOOK = "LeakShopifyWebhookKey03"
SHOPIFY_CLIENT_ID = "LeakShopifyClientId04"
SHOPIFY_CLIENT_SECRET = "LeakShopifyClientSecret05"
WOO_KEY = "ck_LeakWooConsumerKey06"
WOO_SECRET = "cs_LeakWooConsumerSecret07"
WOO_WEBHOOK = "LeakWooWebhookSecret08"
AMAZON_CLIENT_ID = "amzn1.application-oa2-client.LeakAmazonClient09"
AMAZON_CLIENT_SECRET = "LeakAmazonClientSecret10"
AMAZON_REFRESH = "Atzr|LeakAmazonRefreshToken11"
SUPPLIER_SECRET = "LeakSupplierBearer12"
SUPPLIER_KEY = "LeakSupplierApiKey13"
# What the failing hosts hand out before failing: secrets Stockroom never stored but held.
SHOPIFY_DERIVED = "shpat_LeakDerivedShopifyToken14"
AMAZON_DERIVED = "Atza|LeakDerivedAmazonToken15"

SECRETS = [
    PUSH_SECRET, SHOPIFY_TOKEN, SHOPIFY_WEBHOOK, SHOPIFY_CLIENT_ID, SHOPIFY_CLIENT_SECRET, WOO_KEY, WOO_SECRET,
    WOO_WEBHOOK, AMAZON_CLIENT_ID, AMAZON_CLIENT_SECRET, AMAZON_REFRESH, SUPPLIER_SECRET, SUPPLIER_KEY,
    SHOPIFY_DERIVED, AMAZON_DERIVED,
]  # fmt: skip


def tokens_then_echo(status: int):
    """Hands out access tokens (Shopify's client credentials, Login with Amazon), then fails every other
    request with ``status`` and a body that repeats the request."""
    failing = echo(status)

    def handler(seen: Seen):
        if seen.target.startswith("/admin/oauth/access_token"):
            return (
                200,
                {"Content-Type": "application/json"},
                json.dumps({"access_token": SHOPIFY_DERIVED, "scope": "write_inventory", "expires_in": 86399}).encode(),
            )
        if seen.target.startswith("/auth/o2/token"):
            return (
                200,
                {"Content-Type": "application/json"},
                json.dumps({"access_token": AMAZON_DERIVED, "token_type": "bearer", "expires_in": 3600}).encode(),
            )
        return failing(seen)

    return handler


@dataclass
class Hosts:
    http: str
    https: str
    seen: list[Seen] = field(default_factory=list)


@contextmanager
def failing_hosts(mode: str, tmp_path, monkeypatch) -> Iterator[Hosts]:
    if mode == "nothing listens":
        yield Hosts(http=closed_url(), https=closed_url("https"))
        return
    handler = tokens_then_echo(500) if mode == "tokens, then 500 echoing the request" else echo(401)
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    with http_server(handler) as plain, http_server(handler, tls=(cert, key)) as tls:
        hosts = Hosts(http=plain.url, https=tls.url)
        yield hosts
        hosts.seen = plain.seen + tls.seen


def make_channels(hosts: Hosts) -> list[Channel]:
    s = shop()
    specs = [
        ("push", {"push_url": f"{hosts.http}/push", "secret": PUSH_SECRET}, "", ""),
        ("shp-token", {"connector": "shopify",
                       "settings": {"shop_url": hosts.http, "location_id": "gid://shopify/Location/1"},
                       "credentials": {"access_token": SHOPIFY_TOKEN, "webhook_secret": SHOPIFY_WEBHOOK}},
         "gid://shopify/InventoryItem/1", ""),
        # Another shop on the same failing host (one channel per shop: its own address).
        ("shp-client", {"connector": "shopify",
                        "settings": {"shop_url": f"{hosts.http}/second-shop", "location_id": "gid://shopify/Location/1"},
                        "credentials": {"client_id": SHOPIFY_CLIENT_ID, "client_secret": SHOPIFY_CLIENT_SECRET}},
         "gid://shopify/InventoryItem/1", ""),
        ("woo-http", {"connector": "woocommerce", "settings": {"store_url": hosts.http},
                      "credentials": {"consumer_key": WOO_KEY, "consumer_secret": WOO_SECRET,
                                      "webhook_secret": WOO_WEBHOOK}},
         "11", ""),
        ("woo-query", {"connector": "woocommerce",
                       "settings": {"store_url": hosts.https, "query_string_auth": True, "blind_overwrite": True},
                       "credentials": {"consumer_key": WOO_KEY, "consumer_secret": WOO_SECRET,
                                       "webhook_secret": WOO_WEBHOOK}},
         "12", ""),
        ("amazon", {"connector": "amazon",
                    "settings": {"endpoint": hosts.http, "token_url": f"{hosts.http}/auth/o2/token",
                                 "seller_id": "A1SELLER", "marketplace_id": "ATVPDKIKX0DER"},
                    "credentials": {"client_id": AMAZON_CLIENT_ID, "client_secret": AMAZON_CLIENT_SECRET,
                                    "refresh_token": AMAZON_REFRESH}},
         "", "HOODIE"),
    ]  # fmt: skip
    channels = []
    for code, fields, external_id, sku in specs:
        channel = channel_create(
            fields={"code": code, "name": code, "rate_per_s": 50, "burst": 20, **fields},
            location_ids=[s.warehouse.pk],
            state="live",  # linked by hand here: pushed at once, no go-live
        )
        sold = listing(channel, s.single, sku or f"{code}-HOOD", external_id=external_id)
        with transaction.atomic():
            sync_work_enqueue(listing_ids=[sold.pk], priority=Tier.SALE, reason="test")
        channels.append(channel)
    return channels


@contextmanager
def formatted_logs() -> Iterator[io.StringIO]:
    """Every log line as the configured formatter writes it (what lands in the web and worker logs), DEBUG up."""
    root = logging.getLogger()
    formatter = next(h.formatter for h in root.handlers if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def database_text() -> dict[str, str]:
    """Every text, varchar and JSON column of every table: ``table.column`` -> all its values."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT table_name, column_name FROM information_schema.columns
             WHERE table_schema = current_schema()
               AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'ARRAY', 'bytea')
            """
        )
        columns = cursor.fetchall()
        dump = {}
        for table, column in columns:
            cursor.execute(f'SELECT "{column}"::text FROM "{table}"')  # table and column names from the catalog
            dump[f"{table}.{column}"] = "\n".join(str(row[0]) for row in cursor.fetchall() if row[0] is not None)
    return dump


def admin_pages(client) -> dict[str, str]:
    """Every registered model's list page and the change pages of its first rows."""
    pages = {}
    for model, _model_admin in admin.site._registry.items():
        opts = model._meta
        try:
            changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        except NoReverseMatch:
            continue
        response = client.get(changelist)
        assert response.status_code < 500, changelist
        pages[changelist] = response.content.decode()
        for pk in model._default_manager.order_by("pk").values_list("pk", flat=True)[:5]:
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[pk])
            response = client.get(url)
            assert response.status_code < 500, url
            pages[url] = response.content.decode()
    return pages


MODES = ["tokens, then 500 echoing the request", "401 echoing the request", "nothing listens"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_no_secret_can_be_read_back_after_failing_hosts(mode, tmp_path, monkeypatch, caplog, admin_client, staff_api):
    caplog.set_level(logging.INFO)
    with failing_hosts(mode, tmp_path, monkeypatch) as hosts, formatted_logs() as logs:
        channels = make_channels(hosts)
        rest = make_supplier(
            "feedco", connector=Supplier.Connector.REST, secret=SUPPLIER_SECRET,
            settings={"url": f"{hosts.http}/feed?token_hint=1", "attempts": 2, "backoff_s": 0.01},
        )  # fmt: skip
        keyed = make_supplier(
            "keyco", connector=Supplier.Connector.REST, secret=SUPPLIER_KEY,
            settings={"url": f"{hosts.https}/v1/stock", "auth_header": "X-Api-Key", "auth_scheme": "", "attempts": 1},
        )  # fmt: skip
        said: list[str] = []
        for channel in channels:
            channel_push(channel_id=channel.pk)
            said.append(channel_connection_test(channel=channel).message)
            if channel.connector != "stockroom":
                said.append(str(platform_orders_poll(channel_id=channel.pk).error))
                channel_reconcile(channel_id=channel.pk)
        runs = supplier_poll(supplier_id=rest.pk) + supplier_poll(supplier_id=keyed.pk)
        tested = admin_client.post(
            "/admin/channels/channel/",
            {"action": "test_connection", "_selected_action": [c.pk for c in channels]},
            follow=True,
        )
        said.append(tested.content.decode())
    errors = list(SyncWork.objects.values_list("last_error", flat=True))
    # The hosts failed everything, and what was sent really carried the secrets: the search means something.
    assert len(errors) == len(channels) and all(errors), errors
    assert all(run.status == FeedRun.Status.FAILED and run.error for run in runs)
    if mode != "nothing listens":
        sent = "\n".join(seen.dump() for seen in hosts.seen)
        for carried in (SHOPIFY_TOKEN, SHOPIFY_CLIENT_SECRET, WOO_SECRET, AMAZON_REFRESH, SUPPLIER_KEY):
            assert carried in sent or quote_plus(carried) in sent, carried
    readable = {
        "formatted log": logs.getvalue(),
        "captured log records": "\n".join(record.getMessage() for record in caplog.records),
        "last_error": "\n".join(errors),
        "feed runs": "\n".join(run.error for run in FeedRun.objects.all()),
        "messages": "\n".join(said),
        "api channels": staff_api.get("/api/v1/channels/").content.decode(),
        "api suppliers": staff_api.get("/api/v1/suppliers/").content.decode(),
        "api feed runs": staff_api.get("/api/v1/feed-runs/").content.decode(),
        "healthz": admin_client.get("/healthz").content.decode(),
        "metrics": admin_client.get("/metrics").content.decode(),
        **{f"admin {url}": page for url, page in admin_pages(admin_client).items()},
        **{f"database {column}": text for column, text in database_text().items()},
    }
    assert "the endpoint" in readable["last_error"] or "Shopify" in readable["last_error"]
    leaks = [
        f"{secret} in {where}: ...{text[max(0, text.index(secret) - 120) : text.index(secret) + 40]}..."
        for where, text in readable.items()
        for secret in SECRETS
        if secret in text
    ]
    assert leaks == []
