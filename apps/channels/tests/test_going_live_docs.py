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


def test_the_connecting_page_walks_going_live_and_links_each_guides_section():
    page = (DOCS.parent / "connecting.md").read_text()
    section = page.split("\n## Connecting a channel\n", 1)[1].split("\n## ", 1)[0]
    for link in (
        "connectors/shopify.md#5-going-live",
        "connectors/woocommerce.md#going-live",
        "connectors/amazon.md#going-live",
    ):
        assert f"({link})" in section, link
    assert "pushes nothing" in section and "catalog-read/" in section
    assert "Then give each listing the platform's id" not in section  # linking by SKU replaced that
    assert '"rate_per_s": 2' not in section  # the connector brings its platform's pace
    assert re.search(r"^## 5\. Going live$", (DOCS / "shopify.md").read_text(), re.M)
    for platform in ("woocommerce", "amazon"):
        assert re.search(r"^## Going live$", (DOCS / f"{platform}.md").read_text(), re.M), platform
