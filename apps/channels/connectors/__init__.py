"""Connectors: how a channel's platform is spoken to. One module per platform; see ``base``."""

from __future__ import annotations

from functools import cache

from django.utils.module_loading import import_string

from apps.channels.connectors.base import Connector

# name -> class path; loaded on first use so a platform's module costs nothing until a channel uses it.
CONNECTORS = {
    "stockroom": "apps.channels.connectors.stockroom.StockroomConnector",
    "shopify": "apps.channels.connectors.shopify.ShopifyConnector",
    "woocommerce": "apps.channels.connectors.woocommerce.WooCommerceConnector",
    "amazon": "apps.channels.connectors.amazon.AmazonConnector",
}

CONNECTOR_CHOICES = [
    ("stockroom", "Stockroom push protocol"),
    ("shopify", "Shopify"),
    ("woocommerce", "WooCommerce"),
    ("amazon", "Amazon (Selling Partner API)"),
]


@cache
def connector_named(name: str) -> Connector:
    try:
        path = CONNECTORS[name]
    except KeyError:
        raise LookupError(f"No connector named {name!r}; known: {', '.join(CONNECTORS)}.") from None
    connector = import_string(path)()
    assert isinstance(connector, Connector)
    return connector
