"""The demo's webshop on a Shopify store and its marketplace on Amazon, both local fakes in the demo process.

`make run`'s demo connects its webshop channel to the Shopify fake and its marketplace channel to the
Amazon fake through the staff API and the same connectors a merchant uses (docs/connectors/): each
listing of the channel gets a product on the platform and the platform's id of it as ``external_id``.
Stockroom then pushes quantities over the platforms' own APIs; shoppers buy on the platforms, which
take the units off what they show at once; Shopify tells Stockroom by signed webhook to the web
server, and Stockroom polls Amazon's orders every minute (Amazon sends no webhooks). Shipping and
cancelling happen on the platforms too, and reach Stockroom the same ways.

The Shopify shop has three locations, as a merchant with a warehouse and two stores would: the
warehouse's and each store's, mapped one to one (``settings.location_map``), so each shows its own
stock. Shopify routes each online order to a location that has the item (the warehouse first), and the
tills of the first store sell through Shopify POS: their sales reach Stockroom as Shopify orders and are
booked as that store's till sales.

The fakes run as threads of the demo process: they start and stop with it, listen on free ports of
loopback (no fixed port to collide with another run), and the demo knows their ids without a
handshake. A new start gives each platform new addresses, and the channels are pointed at them again;
each product starts at the quantity Stockroom last pushed, so the first compare-and-set matches.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
import structlog

from sandbox.fakes.amazon import AmazonFake
from sandbox.fakes.shopify import ORDER_ID_BASE, ShopifyFake, gid

log = structlog.get_logger("stockroom.demo")

WEBSHOP = "shop1"  # on Shopify
MARKETPLACE = "market1"  # on Amazon
# A sale on Shopify in the second before a push lands must not be a unit the shop no longer has: the
# webshop keeps one unit back (Shopify's own advice for fast sellers is the same). The marketplace
# already has its buffer of 2 (and a coefficient of 0.8) from the demo catalog.
WEBSHOP_BUFFER = 1
# The Shopify shop's locations, in the order Shopify routes online orders: the warehouse, then the stores.
SHOPIFY_LOCATIONS = (("WH", ""), ("S1", "Store Berlin Mitte"), ("S2", "Store Hamburg"))
POS_STORE = "S1"  # its tills are Shopify POS


class StaffApi(Protocol):
    def call(self, method: str, path: str, body: Any = None, *, token: str | None = None, key: str = "") -> Any: ...


@dataclass
class DemoPlatforms:
    """The two platform fakes, what is listed on them, and the shoppers' and merchant's actions there."""

    shopify: ShopifyFake
    amazon: AmazonFake
    shopify_items: dict[str, str] = field(default_factory=dict)  # channel SKU -> inventory item GID
    amazon_skus: list[str] = field(default_factory=list)  # seller SKUs (the channel SKUs)
    shopify_places: dict[str, str] = field(default_factory=dict)  # Stockroom location code -> Shopify location GID

    @classmethod
    def start(cls, *, base_url: str, shopify_orders_after: int = 1000) -> DemoPlatforms:
        """Both fakes on free loopback ports; Shopify's order webhooks go to the web server at ``base_url``.

        Shopify numbers its orders on from ``shopify_orders_after``: order ids are unique per channel, and
        the webshop's orders of an earlier start are still in Stockroom."""
        webhook_url = f"{base_url.rstrip('/')}/api/v1/channels/{WEBSHOP}/webhooks/shopify/"
        shopify = ShopifyFake(
            first_order_number=shopify_orders_after + 1,
            access_token="shpat_demo_" + secrets.token_hex(8),
            webhook_url=webhook_url,
            webhook_secret="demo-shopify-" + secrets.token_hex(8),
            shop_name="Stockroom demo webshop",
            domain="stockroom-demo.myshopify.com",
        ).start()
        amazon = AmazonFake(
            client_secret="demo-amazon-" + secrets.token_hex(8), refresh_token="Atzr|demo-" + secrets.token_hex(8)
        ).start()
        # Made in the same order at every start: the same location ids, which the channel's map names.
        places = {
            code: shopify.location_id if not name else gid("Location", shopify.add_location(name))
            for code, name in SHOPIFY_LOCATIONS
        }
        return cls(shopify=shopify, amazon=amazon, shopify_places=places)

    def stop(self) -> None:
        self.shopify.stop()
        self.amazon.stop()

    # --- connecting the channels, as a merchant would through the staff API ---------------------

    def connect(self, api: StaffApi) -> None:
        """List every webshop and marketplace listing on its platform and point the channels there."""
        shop_listings = _listings(api, WEBSHOP)
        told = _places_told([row["id"] for row in shop_listings])
        for row in shop_listings:
            # Each location starts at what Stockroom last told it, so the first compare-and-set matches.
            before = told.get(row["id"], {})
            self.shopify_items[row["channel_sku"]] = self.shopify.add_item(
                row["channel_sku"],
                quantities={place: int(before.get(place, 0)) for place in self.shopify_places.values()},
            )
        _external_ids_set(
            api, shop_listings, {row["id"]: self.shopify_items[row["channel_sku"]] for row in shop_listings}
        )
        _channel_connect(
            api,
            WEBSHOP,
            {
                "connector": "shopify",
                "settings": {
                    "shop_url": self.shopify.url,
                    "location_map": {place: [code] for code, place in self.shopify_places.items()},
                },
                "credentials": {
                    "access_token": self.shopify.access_token,
                    "webhook_secret": self.shopify.webhook_secret,
                },
                "buffer": WEBSHOP_BUFFER,
            },
        )
        market_listings = _listings(api, MARKETPLACE)
        for row in market_listings:
            self.amazon.add_listing(row["channel_sku"], int(row["last_pushed_qty"] or 0), product_type="SHIRT")
            self.amazon_skus.append(row["channel_sku"])
        _external_ids_set(api, market_listings, {row["id"]: row["channel_sku"] for row in market_listings})
        config = self.amazon.channel_settings()
        _channel_connect(
            api,
            MARKETPLACE,
            {"connector": "amazon", "settings": config["settings"], "credentials": config["credentials"]},
        )

    # --- shoppers and the merchant on the platforms ---------------------------------------------

    def shopify_order(self, rng: random.Random) -> dict[str, Any] | None:
        """A shopper checks out one unit of something the webshop shows; Shopify sends orders/create."""
        on_sale = sorted(sku for sku, item in self.shopify_items.items() if self._routed_to(item) is not None)
        if not on_sale:
            return None
        sku = rng.choice(on_sale)
        order = self.shopify.create_order([(sku, 1)], location_id=self._routed_to(self.shopify_items[sku]))
        delivered = next((d for d in reversed(self.shopify.deliveries) if d.topic == "orders/create"), None)
        log.info(
            "demo_order",
            channel=WEBSHOP,
            platform="shopify",
            order=order["name"],
            sku=sku,
            webhook=delivered.status if delivered else None,
        )
        return order

    def _routed_to(self, item: str) -> str | None:
        """Where Shopify routes an order of one unit: the first location (warehouse, then stores) that has it."""
        return next(
            (place for place in self.shopify_places.values() if (self.shopify.available(item, place) or 0) > 0), None
        )

    def pos_sale(self, item_sku: str, quantity: int) -> dict[str, Any] | None:
        """A till of the POS store sells on Shopify POS (the item's webshop variant); None when the shop does not
        sell the item (the till then books the sale in Stockroom itself)."""
        sku = f"{WEBSHOP.upper()}-{item_sku}"
        if sku not in self.shopify_items:
            return None
        order = self.shopify.create_pos_order([(sku, quantity)], location_id=self.shopify_places[POS_STORE])
        delivered = next((d for d in reversed(self.shopify.deliveries) if d.topic == "orders/create"), None)
        log.info(
            "demo_till_sale",
            store=POS_STORE,
            platform="shopify_pos",
            order=order["name"],
            sku=sku,
            quantity=quantity,
            webhook=delivered.status if delivered else None,
        )
        return order

    def amazon_order(self, rng: random.Random) -> str | None:
        """A buyer orders one unit of something the marketplace offers; Stockroom's next poll imports it."""
        on_sale = sorted(sku for sku in self.amazon_skus if (self.amazon.quantity(sku) or 0) > 0)
        if not on_sale:
            return None
        sku = rng.choice(on_sale)
        order_id = self.amazon.create_order([(sku, 1)])
        log.info("demo_order", channel=MARKETPLACE, platform="amazon", order=order_id, sku=sku, intake="poll")
        return order_id

    def settle(self, channel: str, order_id: str, action: str) -> None:
        """The merchant ships the order, or cancels it, on the platform."""
        if channel == WEBSHOP:
            number = int(order_id)
            if action == "cancel":
                self.shopify.cancel_order(number)
            else:
                self.shopify.fulfill_order(number)
        elif action == "cancel":
            self.amazon.cancel_order(order_id)
        else:
            self.amazon.ship_order(order_id)
        log.debug("demo_order_settled", channel=channel, order=order_id, action=action, on="platform")


def shopify_orders_after(api: StaffApi, token: str) -> int:
    """The highest Shopify order number of the webshop's orders in Stockroom (1000: none yet)."""
    response = api.call("get", "orders/", token=token)  # the channel's own orders, newest first
    numbers = [
        int(row["external_id"]) - ORDER_ID_BASE
        for row in (response.json().get("results", []) if response.status_code == 200 else [])
        if str(row.get("external_id", "")).isdigit() and int(row["external_id"]) > ORDER_ID_BASE
    ]
    return max(numbers, default=1000)


def _places_told(listing_ids: list[int]) -> dict[int, dict[str, int]]:
    """What each Shopify location was last told of these listings (the demo runs beside the database)."""
    from apps.channels.models import Listing

    return dict(Listing.objects.filter(pk__in=listing_ids).values_list("pk", "pushed_places"))


def _listings(api: StaffApi, channel: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    url = f"listings/?channel={channel}"
    while url:
        page = api.call("get", url).json()
        rows += page.get("results", [])
        url = page["next"].split("/api/v1/", 1)[1] if page.get("next") else ""
    return sorted(rows, key=lambda row: row["id"])


def _external_ids_set(api: StaffApi, rows: list[dict[str, Any]], wanted: dict[int, str]) -> None:
    """Give each listing the platform's id; ids that move between listings are cleared first (they are unique)."""
    changing = [row for row in rows if row.get("external_id") != wanted[row["id"]]]
    if any(row.get("external_id") for row in changing):
        for row in changing:
            _ok(api.call("patch", f"listings/{row['id']}/", {"external_id": ""}), f"listing {row['id']}")
    for row in changing:
        _ok(api.call("patch", f"listings/{row['id']}/", {"external_id": wanted[row["id"]]}), f"listing {row['id']}")


def _channel_connect(api: StaffApi, code: str, body: dict[str, Any]) -> None:
    _ok(api.call("patch", f"channels/{code}/", body), f"channel {code}")
    # Every listing now, at tier 2 (staff's "sync now"), rather than with the settings change's tier 3 batch.
    _ok(api.call("post", f"channels/{code}/sync/", {}), f"sync of {code}")


def _ok(response: requests.Response, what: str) -> None:
    if response.status_code >= 400:
        raise RuntimeError(f"the demo could not set up {what}: HTTP {response.status_code} {response.text[:300]}")
