"""From the attacker's side: the supplier webhook (``/api/v1/suppliers/<code>/webhook/``).

Malformed signed bodies are a 400 (or a refused feed run), never a 500; no answer tells a real
supplier code from a made-up one; a flood of forgeries is one log line a minute with its count.
"""

from __future__ import annotations

import json
import logging
import time

import pytest

from apps.suppliers.models import FeedRun
from apps.suppliers.services.webhooks import webhook_signature
from apps.suppliers.tests.factories import make_mapping, make_supplier, now_iso

pytestmark = pytest.mark.django_db

SECRET = "whsec-supplier-attack"


@pytest.fixture
def pushing():
    supplier = make_supplier("pusher", connector="webhook", settings={}, secret=SECRET)
    make_mapping(supplier, "P1")
    return supplier


def post(client, code: str, raw: bytes, *, secret: str = SECRET, ts: int | None = None, headers: bool = True):
    stamp = str(int(time.time()) if ts is None else ts)
    extra = (
        {"HTTP_X_TIMESTAMP": stamp, "HTTP_X_SIGNATURE": webhook_signature(secret=secret, timestamp=stamp, body=raw)}
        if headers
        else {}
    )
    return client.post(f"/api/v1/suppliers/{code}/webhook/", data=raw, content_type="application/json", **extra)


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"items": 5}',
        b'{"items": [1, "two", null]}',
        b'{"items": [{"supplier_sku": ["P1"], "quantity": {"n": 1}, "updated_at": 7}]}',
        b'{"items": [], "items": []}',
        b'{"items": [{"supplier_sku": "P\\u00001", "quantity": 1}]}',
    ],
)
def test_a_signed_malformed_push_is_refused_never_a_server_error(client, pushing, raw):
    answer = post(client, "pusher", raw)
    assert answer.status_code in (400, 422), answer.content[:300]
    assert answer.json()["code"] in ("invalid", "invalid_json", "invalid_text", "feed_refused", "feed_failed")


def test_a_real_supplier_and_a_made_up_one_answer_alike(client, pushing):
    raw = json.dumps({"items": [{"supplier_sku": "P1", "quantity": 4, "updated_at": now_iso()}]}).encode()
    stale = int(time.time()) - 3600
    pairs = [
        (post(client, "pusher", raw, secret="a guess"), post(client, "nobody", raw, secret="a guess")),
        (post(client, "pusher", raw, ts=stale), post(client, "nobody", raw, ts=stale)),
        (post(client, "pusher", raw, headers=False), post(client, "nobody", raw, headers=False)),
        (post(client, "pusher", raw, ts=-1), post(client, "nobody", raw, ts=-1)),
    ]
    for real, made_up in pairs:
        assert real.status_code == 401
        assert (real.status_code, real.content) == (made_up.status_code, made_up.content)
    assert not FeedRun.objects.exists()


def test_200_forged_pushes_write_one_log_line_with_their_count(client, pushing, caplog, settings):
    settings.REFUSAL_LOG_WINDOW_S = 600
    settings.CACHES = {
        **settings.CACHES,
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"supplier-forged-{time.monotonic_ns()}"},
    }
    caplog.set_level(logging.WARNING, logger="stockroom.suppliers.webhook")
    raw = b'{"items": []}'
    assert {post(client, "pusher", raw, secret=f"guess-{n}").status_code for n in range(200)} == {401}
    lines = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "webhook_refused"]
    assert [(line["endpoint"], line["repeats"]) for line in lines] == [("supplier-webhook:pusher", 1)]
