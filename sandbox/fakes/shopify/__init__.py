"""A Shopify store on loopback: the slice of the GraphQL Admin API that Stockroom speaks, and order webhooks.

``POST {url}/admin/api/{version}/graphql.json`` with ``X-Shopify-Access-Token``, answered by a real
GraphQL executor over a subset of the Admin schema (so a misspelt field fails here as it would at
Shopify), under Shopify's cost model: every request's requested cost must fit the leaky bucket
(``maximumAvailable`` points, refilled at ``restoreRate`` per second) or it is refused with a
``THROTTLED`` error; a single request may not ask for more than 1000 points; the difference between
requested and actual cost is refunded; ``extensions.cost`` reports it all. Supported: ``shop``,
``location``, ``nodes`` / ``inventoryItem`` (levels and quantities at a location), ``orders`` (search
``updated_at:>=…``, sort, cursor pagination), for going live ``locations``, ``products``,
``productVariants`` (with their inventory item, whether tracked, and its ``inventoryLevels`` at every
location), their counts, bulk query operations (``bulkOperationRunQuery`` with Shopify's limits, run in the
background, ``bulkOperation``/``currentBulkOperation``, the JSONL result served over HTTP at its ``url``;
``bulk_fail`` makes the next one fail) and ``webhookSubscriptions``/``webhookSubscriptionCreate`` (order
webhooks then go to every subscribed address too), and the mutation ``inventorySetQuantities`` as of
2026-04+: ``changeFromQuantity`` must be given for every quantity (null opts out of the compare), the
``@idempotent(key:)`` directive is required, and one bad quantity refuses the whole mutation with
``userErrors`` naming its index (``CHANGE_FROM_QUANTITY_STALE``, ``INVALID_INVENTORY_ITEM`` ...).
A wrong token gets 401. Orders created, updated or cancelled here (as a shopper or the merchant
would) move the ``available`` quantity like Shopify does and are sent as signed REST-shaped
webhooks (``X-Shopify-Hmac-Sha256``, ``X-Shopify-Topic``, ``X-Shopify-Webhook-Id``) to
``webhook_url``. Used in-process (``ShopifyFake(...).start()``) or as ``manage.py fake_shopify``,
which adds a small control API under ``/_fake/``.
"""

from sandbox.fakes.shopify.store import ORDER_ID_BASE, Delivery, ShopifyFake, gid, parse_gid, sign_webhook

__all__ = ["ORDER_ID_BASE", "Delivery", "ShopifyFake", "gid", "parse_gid", "sign_webhook"]
