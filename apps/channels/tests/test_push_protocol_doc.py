"""docs/push-protocol.md says what the pusher does: its verification snippet accepts Stockroom's pushes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from apps.channels.services.push import SIGNATURE_HEADER, push_body, sign

DOC = Path(__file__).resolve().parents[3] / "docs" / "push-protocol.md"


def test_the_documented_verification_accepts_a_real_push_and_refuses_a_forged_one():
    snippet = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert snippet is not None
    scope: dict = {}
    exec(snippet.group(1), scope)  # the reader's own code, as printed
    verify = scope["push_is_from_stockroom"]
    body = push_body(channel_code="shop1", updates=[("HOOD-M", 12)], as_of=datetime(2026, 3, 2, tzinfo=UTC))
    assert verify(body, sign(body, "s3cret"), "s3cret")
    assert not verify(body, sign(body, "other"), "s3cret")
    assert not verify(body + b" ", sign(body, "s3cret"), "s3cret")
    assert json.loads(body) == {
        "channel": "shop1",
        "updates": [{"sku": "HOOD-M", "available": 12, "as_of": "2026-03-02T00:00:00+00:00"}],
    }


@pytest.mark.django_db
def test_the_schema_documents_the_push_and_the_read_back_as_callbacks(client):
    schema = yaml.safe_load(client.get("/api/v1/schema/").content)
    callback = schema["paths"]["/api/v1/channels/"]["post"]["callbacks"]["stockPush"]["{$request.body#/push_url}"]
    assert {"post", "get"} == set(callback)
    for operation in callback.values():
        assert any(p["name"] == SIGNATURE_HEADER and p["in"] == "header" for p in operation["parameters"])
    assert set(callback["post"]["responses"]) >= {"200", "429"}
    body = callback["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["channel", "updates"]
