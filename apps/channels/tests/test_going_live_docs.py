"""Each connector's guide walks the same going-live flow as the onboarding page and the API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[3] / "docs" / "connectors"
CALLS = ("platform-locations/", "link/", "opening-stock/", "go-live/", "pause/", "resume/")


@pytest.mark.parametrize("platform", ["shopify", "woocommerce", "amazon"])
def test_each_guide_has_a_going_live_section_in_the_pages_order(platform):
    text = (DOCS / f"{platform}.md").read_text()
    section = re.search(r"^## (?:\d+\. )?Going live\n(.*?)(?=^## )", text, re.S | re.M)
    assert section is not None, platform
    body = section.group(1)
    assert "`setup`" in body and "onboarding page" in body
    for call in CALLS:
        assert f"/api/v1/channels/<code>/{call}" in body or f".../{call}" in body, (platform, call)
    steps = [
        body.index(word)
        for word in (
            "**Connect.**",
            "**Locations.**",
            "**Link by SKU.**",
            "**Opening stock (optional).**",
            "**Go live.**",
            "**Pause and resume.**",
        )
    ]
    assert steps == sorted(steps)
    assert '"apply": false' in body and '"confirm": true' in body


def test_no_guide_asks_for_inventory_item_ids_by_hand():
    shopify = (DOCS / "shopify.md").read_text()
    assert "productVariants(first" not in shopify and "GraphiQL" not in shopify
    assert "STOCKROOM_PUBLIC_URL" in shopify and "webhooks/shopify/" in shopify
