"""The push protocol as OpenAPI callbacks of a channel's `push_url` (docs/push-protocol.md tells it in full).

Raw operation objects: drf-spectacular's callbacks take no header parameters otherwise, and
these requests go from Stockroom to the channel, so the API's own error answers do not apply.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiCallback

from apps.channels.services.push import SIGNATURE_HEADER

_SIGNED = (
    "`sha256=` and the hex HMAC-SHA256, keyed with the channel's `secret`, of the exact bytes received: "
    "the body of a push, the query string (after `?`) of a read-back. Compare in constant time; refuse a "
    "mismatch with 401."
)
_SIGNATURE = {
    "name": SIGNATURE_HEADER,
    "in": "header",
    "required": True,
    "description": _SIGNED,
    "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
    "example": "sha256=5d41402abc4b2a76b9719d911017c592ae7d2b4f1c0e5a7e5b0e9c1f2d3a4b5c",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds (or an HTTP date) to wait.", "schema": {"type": "string"}}}

_PUSH = {
    "summary": "Stockroom pushes quantities to the channel",
    "description": "Absolute quantities, so a repeated push is harmless: set each SKU's stock to `available`, "
    "ignoring an update whose `as_of` is older than the one you applied last. Up to the channel's `batch_size` "
    "updates per request, within its `rate_per_s` and `burst`. A 2xx accepts the whole batch. 429 with "
    "`Retry-After` pauses every push to the channel for that long, then the batch is sent again. Anything else "
    "(or no answer within 10 s) is retried with exponential backoff (2 s doubling to 5 min, and at least "
    "`Retry-After`); after 8 failed attempts the update is parked in the dead letter for staff to retry.",
    "parameters": [_SIGNATURE],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["channel", "updates"],
                    "properties": {
                        "channel": {"type": "string", "description": "The channel's code."},
                        "updates": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["sku", "available", "as_of"],
                                "properties": {
                                    "sku": {"type": "string", "description": "The channel's own SKU."},
                                    "available": {"type": "integer", "minimum": 0},
                                    "as_of": {"type": "string", "format": "date-time"},
                                },
                            },
                        },
                    },
                },
                "example": {
                    "channel": "shop1",
                    "updates": [
                        {"sku": "HOOD-M", "available": 12, "as_of": "2026-03-02T10:15:00.120000+00:00"},
                        {"sku": "CAP", "available": 0, "as_of": "2026-03-02T10:15:00.120000+00:00"},
                    ],
                },
            }
        },
    },
    "responses": {
        "200": {"description": "Accepted (any 2xx)."},
        "401": {"description": "The signature does not match: Stockroom retries, then dead-letters."},
        "429": {"description": "Throttled: pushes to this channel pause for `Retry-After`.", "headers": _RETRY_AFTER},
        "503": {"description": "Any other status: retried with backoff.", "headers": _RETRY_AFTER},
    },
}

_READ_BACK = {
    "summary": "Stockroom reads back what the channel shows",
    "description": "The reconciliation job asks for the quantities the channel shows now and pushes again "
    "where they drifted. The signature covers the query string, e.g. `sku=HOOD-M&sku=CAP`.",
    "parameters": [
        {
            "name": "sku",
            "in": "query",
            "required": True,
            "style": "form",
            "explode": True,
            "schema": {"type": "array", "items": {"type": "string"}},
            "description": "The channel's SKUs, the parameter repeated.",
        },
        _SIGNATURE,
    ],
    "responses": {
        "200": {
            "description": "What the channel shows; `available: null` for a SKU it does not know.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["results"],
                        "properties": {
                            "results": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["sku", "available"],
                                    "properties": {
                                        "sku": {"type": "string"},
                                        "available": {"type": "integer", "nullable": True},
                                    },
                                },
                            }
                        },
                    },
                    "example": {"results": [{"sku": "HOOD-M", "available": 12}, {"sku": "CAP", "available": 0}]},
                }
            },
        },
        "429": {"description": "Throttled: the read-back waits for `Retry-After`.", "headers": _RETRY_AFTER},
    },
}

PUSH_CALLBACKS = [
    OpenApiCallback(
        "stockPush",
        "{$request.body#/push_url}",
        {"post": _PUSH, "get": _READ_BACK},
    )
]
