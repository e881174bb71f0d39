"""`make run`'s demo with real connector traffic: its webshop on the Shopify fake, its marketplace on the Amazon fake.

With a real Celery worker and the web server, as `make run` has them: Stockroom pushes every listing to the
platforms, shoppers buy there, and each order placed on a platform reaches Stockroom (Shopify's webhook at
once, Amazon's with the order poll the beat runs every minute, a little faster here) as a reservation. The
staff dashboard shows each connector channel's pushes. Nothing opens an incident.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest
from django.core.management import call_command

from apps.catalog.models import Incident, Movement
from apps.channels.connectors.base import location_map
from apps.channels.models import Channel, Listing, SyncWork
from apps.channels.selectors import listings_availability, listings_availability_by_place, sync_lag_by_channel
from apps.channels.tasks import sync_sweep
from apps.channels.tests.conftest import celery_worker, clean_sync_redis, fast_sync, wait_for  # noqa: F401
from apps.orders import tasks
from apps.orders.models import Order, Reservation
from sandbox.demo.live import DELIVERY_EVERY, LiveDemo
from sandbox.demo.past_weeks import HISTORY_REFERENCE, demo_forecast_start
from sandbox.demo.platforms import MARKETPLACE, WEBSHOP

pytestmark = [pytest.mark.worker, pytest.mark.slow]


class Beat:
    """The beat's jobs the demo needs: the order poll of every platform channel, every ``every`` seconds
    instead of every minute, and the sync sweep (tier 3 work)."""

    def __init__(self, every: float) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every: float) -> None:
        while not self.stop.wait(every):
            tasks.platform_orders_poll_all.delay()
            sync_sweep.apply_async(queue="default")

    def __enter__(self) -> Beat:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def demo(live_server, django_user_model, tmp_path, settings) -> Iterator[LiveDemo]:
    from apps.core.services import token_create

    settings.STOCKROOM_DROP_ROOT = tmp_path / "drop"
    call_command("loaddata", "demo_catalog", verbosity=0)
    demo_forecast_start(seed_history=True)
    django_user_model.objects.create_user(username="bot", is_staff=True, is_superuser=True)
    live = LiveDemo(
        base_url=live_server.url,
        staff_token=token_create(staff_username="bot"),
        channel_tokens={code: token_create(channel_code=code) for code in ("shop1", "market1", "deliver1")},
        var_dir=tmp_path,
        seed=5,
    )
    yield live
    live.stop()


def platform_work() -> bool:
    return SyncWork.objects.filter(channel__code__in=[WEBSHOP, MARKETPLACE]).exists()


def platforms_show_the_truth(demo: LiveDemo) -> bool:
    assert demo.platforms is not None
    listings = list(Listing.objects.filter(channel__code__in=[WEBSHOP, MARKETPLACE]).select_related("channel"))
    truth = listings_availability([lst.pk for lst in listings])
    webshop = [lst for lst in listings if lst.channel.code == WEBSHOP]
    if webshop:  # each Shopify location shows its own Stockroom location's stock
        places = location_map(webshop[0].channel.settings)
        at = listings_availability_by_place([lst.pk for lst in webshop], places)
        for lst in webshop:
            if any(demo.platforms.shopify.available(lst.external_id, place) != at[lst.pk][place] for place in places):
                return False
    for lst in listings:
        if lst.channel.code != WEBSHOP and demo.platforms.amazon.quantity(lst.external_id) != truth[lst.pk].available:
            return False
    return True


def run_demo(demo: LiveDemo, *, pace_s: float, until: object, seconds: float) -> None:
    stop = threading.Event()
    runner = threading.Thread(target=demo.run, args=(stop,), kwargs={"pace_s": pace_s})
    runner.start()
    try:
        deadline = time.monotonic() + seconds
        while not until() and time.monotonic() < deadline and runner.is_alive():  # type: ignore[operator]
            time.sleep(0.2)
    finally:
        stop.set()
        runner.join(30)


def test_the_demo_sells_through_shopify_and_amazon(demo, celery_worker, admin_client):  # noqa: F811
    celery_worker()
    demo.wire()
    platforms = demo.platforms
    assert platforms is not None

    # Every webshop and marketplace listing reaches its platform through the connector.
    wait_for(lambda: platforms_show_the_truth(demo) and not platform_work(), timeout=30)
    assert platforms.shopify.mutations(), "Stockroom set quantities on Shopify"
    # (The first push of all eight goes as one listings feed; sales then go as single patches.)
    assert platforms.amazon.requests("createFeed") or platforms.amazon.requests("patchListingsItem")
    assert sum(1 for q in map(platforms.amazon.quantity, platforms.amazon_skus) if q) > 0, "Amazon offers something"

    with Beat(every=3.0):
        run_demo(
            demo,
            pace_s=0.4,
            until=lambda: len(platforms.shopify.orders) >= 3 and len(platforms.amazon.orders) >= 3 and demo.turn >= 30,
            seconds=120,
        )
        # Each order placed on a platform is in Stockroom: Shopify's by webhook, Amazon's by the order poll.
        # (The first store's tills sell on Shopify POS: those are the store's till sales, booked once, no order.)
        for number, sold in platforms.shopify.orders.items():
            if sold.source_name == "pos":
                booked = Movement.objects.filter(idempotency_key__startswith=f"{WEBSHOP}:{number}:")
                wait_for(booked.exists)
                assert not Order.objects.filter(channel__code=WEBSHOP, external_id=str(number)).exists(), number
            else:
                assert Order.objects.filter(channel__code=WEBSHOP, external_id=str(number)).exists(), number
        # (An Amazon order cancelled before the poll saw it never holds stock, so Stockroom stores none.)
        placed = [number for number, order in platforms.amazon.orders.items() if order.status != "Canceled"]
        wait_for(
            lambda: Order.objects.filter(channel__code=MARKETPLACE, external_id__in=placed).count() == len(placed),
            timeout=30,
        )
    assert len(platforms.shopify.orders) >= 3 and len(platforms.amazon.orders) >= 3
    assert platforms.amazon.requests("patchListingsItem"), "sales reached Amazon as patches"
    for order in Order.objects.filter(channel__code__in=[WEBSHOP, MARKETPLACE]):
        held = Reservation.objects.filter(line__order=order)
        assert held.exists(), f"{order.channel.code} order {order.external_id} reserved its units"
    assert platforms.shopify.deliveries and {d.status for d in platforms.shopify.deliveries} == {200}

    # The dashboard shows each channel's connector and the pushes the workers counted for it.
    rows = {row["channel"]: row for row in sync_lag_by_channel()}
    assert rows[WEBSHOP]["connector"] == "shopify" and rows[WEBSHOP]["pushes"] > 0
    assert rows[MARKETPLACE]["connector"] == "amazon" and rows[MARKETPLACE]["pushes"] > 0
    assert rows["deliver1"]["connector"] == "stockroom"
    page = admin_client.get("/staff/").content.decode()
    sync = page[page.index('id="sync-lag"') : page.index('id="feed-freshness"')]
    assert '<td class="small connector">shopify</td>' in sync and '<td class="small connector">amazon</td>' in sync
    # (The worker may push again between the two reads: the page shows at least what was counted before.)
    shown = re.search(r'<td class="small connector">shopify</td>.*?<td class="num pushes">(\d+)</td>', sync, re.S)
    assert shown is not None and int(shown.group(1)) >= rows[WEBSHOP]["pushes"]

    assert list(Incident.objects.values_list("kind", "detail")) == [] and demo.incidents == 0
    assert Channel.objects.get(code=WEBSHOP).connector == "shopify"


def test_the_demo_opens_no_incident_in_its_first_minutes_with_its_platforms(demo, celery_worker):  # noqa: F811
    """Two deliveries' worth of traffic, with the worker pushing to Shopify and Amazon and the order poll
    running; shoppers on the platforms buy only what the platforms show."""
    celery_worker()
    demo.wire()
    assert demo.platforms is not None
    wait_for(lambda: platforms_show_the_truth(demo), timeout=30)
    with Beat(every=5.0):
        run_demo(demo, pace_s=0.3, until=lambda: demo.turn >= 2 * DELIVERY_EVERY + 10, seconds=300)
    assert demo.turn >= 2 * DELIVERY_EVERY, "the demo ran its first minutes"
    assert demo.platforms.shopify.orders and demo.platforms.amazon.orders, "shoppers bought on both platforms"
    assert Movement.objects.filter(kind=Movement.Kind.POS_SALE).exclude(reference=HISTORY_REFERENCE).exists()
    assert list(Incident.objects.values_list("kind", "detail")) == []
    assert demo.incidents == 0
