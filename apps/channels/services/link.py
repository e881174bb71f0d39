"""Discover and link: read a platform's locations and catalog, and link its variants to products by SKU.

Used by the API (``/channels/<code>/platform-locations/``, ``/link/``) and the admin's onboarding page.
Every platform read goes through the channel's connector (``Connector.locations``/``catalog``); a
platform that cannot be read raises ``PlatformUnavailable`` (502, a short reason, never the remote
body) and a connector that has no such read ``PlatformReadUnsupported`` (400).

Matching (``channel_link``), for each variant the platform lists:

1. a mapping sheet (CSV ``platform_sku,product``) names its product: that one;
2. else a product whose code is the SKU;
3. else an item whose SKU it is, if exactly one standard product contains it;
4. else, with ``create_missing``, a new item (unit piece, the variant's title) and a standard product
   (code = SKU) are made for it; without, it is ``platform_only``.

Variants that cannot be pushed are ``problems`` and never linked, each with a code:
``no_sku``, ``duplicate_sku`` (two variants share one SKU: each of them), ``untracked`` (the platform
does not count its quantity), ``platform_managed`` (the platform keeps the stock, Amazon FBA),
``not_stocked_at_location`` (no quantity at the channel's platform location), ``already_linked``
(the SKU or the platform id is already a listing of this channel for another variant or product).
A variant already linked exactly so (a listing with its SKU and platform id) is ``matched`` again and
not created twice: linking is idempotent, run it again later to link new variants.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from django.db import connection, transaction
from django.utils import timezone
from rest_framework import status

from apps.catalog.models import Item, Product
from apps.catalog.services.catalog import ComponentSpec, items_create, products_create
from apps.channels.connectors.base import (
    Catalog,
    CatalogEntry,
    Connector,
    ConnectorError,
    PlatformLocation,
    Progress,
)
from apps.channels.locks import channel_for_update
from apps.channels.models import CatalogRead, Channel, Listing
from apps.channels.selectors import listings_availability, products_channel_quantity
from apps.channels.services.config import listings_create
from apps.channels.services.connection import channel_connector, channel_ref
from apps.core.errors import DomainError, InvalidValue
from apps.core.redaction import redact
from apps.core.secrets import SecretsUnreadable

log = structlog.get_logger("stockroom.channels")

MAX_REASON = 200
MAX_MAPPING_BYTES = 5 * 1024 * 1024


class PlatformUnavailable(DomainError):
    """The platform could not be read or refused (its reason, shortened; never its body)."""

    code = "platform_unavailable"
    status_code = status.HTTP_502_BAD_GATEWAY
    default_detail = "The platform could not be reached."


class PlatformReadUnsupported(DomainError):
    code = "platform_read_unsupported"
    default_detail = "This channel's connector cannot read the platform's catalog or locations."


class PlatformNotConfigured(DomainError):
    code = "platform_not_configured"
    default_detail = "The channel's connector settings or credentials are missing or unreadable."


def short_reason(err: Exception) -> str:
    """A platform error for people (API answers, the onboarding page, CatalogRead.error): one short line,
    without URL query strings or any credential this process holds."""
    text = redact(" ".join((str(err) or type(err).__name__).split()))
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def channel_platform(channel: Channel) -> tuple[Connector, Any]:
    try:
        connector = channel_connector(channel)
        ref = channel_ref(channel)
    except SecretsUnreadable as err:
        raise PlatformNotConfigured(f"{err} Enter the credentials again.") from err
    except (LookupError, ImportError) as err:
        raise PlatformNotConfigured(short_reason(err)) from err
    if not connector.configured(ref):
        raise PlatformNotConfigured(f"{connector.label}: settings or credentials are missing.")
    return connector, ref


def channel_platform_locations(*, channel: Channel) -> list[PlatformLocation]:
    """The platform's stock locations (id, name, active), read now through the connector."""
    connector, ref = channel_platform(channel)
    try:
        return list(connector.locations(ref))
    except NotImplementedError as err:
        raise PlatformReadUnsupported(f"{connector.label} cannot list its locations.") from err
    except ConnectorError as err:
        log.info("platform_locations_failed", channel=channel.code, error=short_reason(err))
        raise PlatformUnavailable(f"{connector.label}: {short_reason(err)}") from err
    except Exception as err:  # a connector's bug is a short answer too, never a 500 with a remote body
        log.exception("platform_locations_crashed", channel=channel.code)
        raise PlatformUnavailable(f"{connector.label}: the connector failed ({type(err).__name__}).") from err


def channel_catalog_read(*, channel: Channel, progress: Progress | None = None) -> Catalog:
    """Every variant the platform sells for this channel (``Connector.catalog``), read now.

    ``progress(done, total)`` is called as pages or lines arrive. A whole catalog takes long (about a minute
    for 50,000 Shopify variants): the onboarding page reads it in the background (``services.discover``).
    """
    connector, ref = channel_platform(channel)
    try:
        catalog = connector.catalog(ref, progress) if progress is not None else connector.catalog(ref)
    except NotImplementedError as err:
        raise PlatformReadUnsupported(f"{connector.label} cannot read its catalog yet.") from err
    except ConnectorError as err:
        log.info("platform_catalog_failed", channel=channel.code, error=short_reason(err))
        raise PlatformUnavailable(f"{connector.label}: {short_reason(err)}") from err
    except Exception as err:  # a connector's bug is a short answer too, never a 500 with a remote body
        log.exception("platform_catalog_crashed", channel=channel.code)
        raise PlatformUnavailable(f"{connector.label}: the connector failed ({type(err).__name__}).") from err
    log.info("platform_catalog_read", channel=channel.code, variants=len(catalog.entries), requests=catalog.requests)
    return catalog


# A catalog read in the background serves the channel's previews this long (the platform's quantities
# move with its sales: the go-live preview's "from" is at most this old).
CATALOG_FRESH_S = 300


def catalog_entries_dump(catalog: Catalog) -> list[list[Any]]:
    """The variants as compact JSON rows (``CatalogRead.entries``)."""
    return [[e.sku, e.external_id, e.title, e.tracked, e.platform_managed, dict(e.quantities)] for e in catalog.entries]


def catalog_entries_load(rows: Sequence[Sequence[Any]], requests: int = 0) -> Catalog:
    return Catalog(
        entries=[
            CatalogEntry(
                sku=sku,
                external_id=external_id,
                title=title,
                tracked=bool(tracked),
                platform_managed=bool(managed),
                quantities={str(k): int(v) for k, v in (quantities or {}).items()},
            )
            for sku, external_id, title, tracked, managed, quantities in rows
        ],
        requests=requests,
    )


def catalog_read_fresh(channel: Channel) -> CatalogRead | None:
    """The channel's latest finished background read of its catalog, if younger than ``CATALOG_FRESH_S``."""
    since = timezone.now() - timedelta(seconds=CATALOG_FRESH_S)
    latest = CatalogRead.objects.filter(channel=channel).order_by("-created_at", "-id").first()
    if latest is None or latest.state != CatalogRead.State.DONE or latest.finished_at is None:
        return None
    return latest if latest.finished_at >= since else None


def catalog_read_running(channel: Channel) -> CatalogRead | None:
    """The channel's background read of its catalog under way (queued or reading), if any."""
    return (
        CatalogRead.objects.filter(channel=channel, state__in=[CatalogRead.State.QUEUED, CatalogRead.State.RUNNING])
        .defer("entries")
        .order_by("-created_at", "-id")
        .first()
    )


def channel_catalog(*, channel: Channel) -> Catalog:
    """The platform's catalog for a preview: the channel's fresh background read when there is one (nothing
    is read again), else read now, inside the caller's request."""
    fresh = catalog_read_fresh(channel)
    if fresh is not None and fresh.entries is not None:
        return catalog_entries_load(fresh.entries, fresh.requests)
    return channel_catalog_read(channel=channel)


def channel_platform_location_id(channel: Channel) -> str:
    """The platform location the channel pushes to: ``settings.location_id`` (Shopify), else the marketplace
    (Amazon ``marketplace_id``); "" where the platform has one location only (WooCommerce)."""
    settings = channel.settings or {}
    return str(settings.get("location_id") or settings.get("marketplace_id") or "")


def entry_quantity(entry: CatalogEntry, location_id: str) -> int | None:
    """The variant's quantity at ``location_id``; with no location named, its only one. None: not stocked there."""
    if location_id:
        return entry.quantities.get(location_id)
    if len(entry.quantities) == 1:
        return next(iter(entry.quantities.values()))
    return None


def mapping_sheet_read(data: bytes | str) -> dict[str, str]:
    """A mapping sheet (CSV ``platform_sku,product``, a header row optional) as {platform SKU: product code}.

    Raises InvalidValue with one entry per bad row (field ``mapping[<row>]``).
    """
    if isinstance(data, bytes):
        if len(data) > MAX_MAPPING_BYTES:
            raise InvalidValue("The mapping sheet is larger than 5 MB.", errors={"mapping": ["Too large."]})
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise InvalidValue("The mapping sheet is not UTF-8 text.", errors={"mapping": ["Not UTF-8."]}) from err
    if "\x00" in data:  # no text column can hold it: refused here, not by the database
        raise InvalidValue("The mapping sheet contains a NUL byte.", errors={"mapping": ["Contains a NUL byte."]})
    mapping: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    for number, row in enumerate(csv.reader(io.StringIO(data)), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if number == 1 and [c.lower() for c in cells[:2]] == ["platform_sku", "product"]:
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            errors[f"mapping[{number}]"] = ["Expected two columns: platform_sku,product."]
            continue
        if cells[0] in mapping and mapping[cells[0]] != cells[1]:
            errors[f"mapping[{number}]"] = [f"{cells[0]} is mapped twice."]
            continue
        mapping[cells[0]] = cells[1]
    if errors:
        raise InvalidValue("The mapping sheet has rows that cannot be read.", errors=errors)
    return mapping


@dataclass
class LinkResult:
    """The answer of ``channel_link``, the API's shape as is (``as_dict``)."""

    matched: list[dict[str, Any]] = field(default_factory=list)
    platform_only: list[dict[str, Any]] = field(default_factory=list)
    stockroom_only: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    created: int = 0  # listings this call created (apply) or would create (preview)
    applied: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "platform_only": self.platform_only,
            "stockroom_only": self.stockroom_only,
            "problems": self.problems,
            "created": self.created,
        }


_ITEM_SOLE_STANDARD = """
SELECT i.sku, MIN(p.id), MIN(p.code)
  FROM catalog_item i
  JOIN catalog_productcomponent pc ON pc.item_id = i.id
  JOIN catalog_product p ON p.id = pc.product_id AND p.kind = 'standard'
 WHERE i.sku = ANY(%s::text[])
 GROUP BY i.sku
HAVING COUNT(DISTINCT p.id) = 1
"""

_STOCKROOM_ONLY = """
SELECT p.id, p.code
  FROM catalog_product p
 WHERE p.is_active AND NOT (p.id = ANY(%(matched)s::bigint[]))
   AND NOT EXISTS (SELECT 1 FROM channels_listing l WHERE l.channel_id = %(channel)s AND l.product_id = p.id)
 ORDER BY p.code
"""


def _products_by_code(codes: Sequence[str]) -> dict[str, tuple[int, str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT code, id FROM catalog_product WHERE code = ANY(%s::text[])", [sorted(set(codes))])
        return {code: (pk, code) for code, pk in cursor.fetchall()}


def _items_sole_standard(skus: Sequence[str]) -> dict[str, tuple[int, str]]:
    with connection.cursor() as cursor:
        cursor.execute(_ITEM_SOLE_STANDARD, [sorted(set(skus))])
        return {sku: (pk, code) for sku, pk, code in cursor.fetchall()}


def _items_with_standard(item_ids: Sequence[int]) -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT pc.item_id FROM catalog_productcomponent pc
              JOIN catalog_product p ON p.id = pc.product_id AND p.kind = 'standard'
             WHERE pc.item_id = ANY(%s::bigint[])
            """,
            [sorted(set(item_ids))],
        )
        return {row[0] for row in cursor.fetchall()}


def _items_by_sku(skus: Sequence[str]) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT sku, id FROM catalog_item WHERE sku = ANY(%s::text[])", [sorted(set(skus))])
        return dict(cursor.fetchall())


@dataclass
class _Plan:
    result: LinkResult
    new_links: list[tuple[CatalogEntry, int]]  # (variant, product id) to list
    to_create: list[CatalogEntry]  # variants whose item and product are made (create_missing)
    existing_items: dict[str, int]  # SKU -> item id, for variants whose item exists with no standard product


def _plan(
    channel: Channel, catalog: Catalog, mapping: Mapping[str, str], create_missing: bool, location_id: str
) -> _Plan:
    result = LinkResult()
    by_sku: dict[str, list[CatalogEntry]] = defaultdict(list)
    for entry in catalog.entries:
        if not entry.sku.strip():
            result.problems.append(_problem(entry, "no_sku", "The variant has no SKU on the platform."))
        else:
            by_sku[entry.sku.strip()].append(entry)
    skus = list(by_sku)
    mapped_codes = _products_by_code(list(mapping.values()))
    unknown = sorted({code for code in mapping.values() if code not in mapped_codes})
    if unknown:
        raise InvalidValue(
            f"The mapping sheet names products that do not exist: {', '.join(unknown[:20])}.",
            errors={"mapping": [f"Unknown product {code}." for code in unknown[:50]]},
        )
    by_code = _products_by_code(skus)
    by_item = _items_sole_standard([sku for sku in skus if sku not in by_code and sku not in mapping])
    listings = list(
        Listing.objects.filter(channel=channel).values_list(
            "pk", "channel_sku", "external_id", "product_id", "product__code"
        )
    )
    by_listing_sku = {sku: (pk, ext, product) for pk, sku, ext, product, _code in listings}
    by_listing_ext = {ext: (pk, sku, product) for pk, sku, ext, product, _code in listings if ext}
    product_codes = {product: code for *_, product, code in listings}
    new_links: list[tuple[CatalogEntry, int]] = []
    linked: list[tuple[CatalogEntry, int, int]] = []  # (variant, product id, listing id)
    to_create: list[CatalogEntry] = []
    for sku, entries in by_sku.items():
        if len(entries) > 1:
            for entry in entries:
                result.problems.append(
                    _problem(entry, "duplicate_sku", f"{len(entries)} variants on the platform have the SKU {sku}.")
                )
            continue
        entry = entries[0]
        if entry.platform_managed:
            result.problems.append(_problem(entry, "platform_managed", "The platform keeps this stock itself."))
            continue
        if not entry.tracked:
            result.problems.append(_problem(entry, "untracked", "The platform does not track this quantity."))
            continue
        if entry_quantity(entry, location_id) is None:
            where = location_id or "the platform's location"
            result.problems.append(_problem(entry, "not_stocked_at_location", f"Not stocked at {where}."))
            continue
        at_sku, at_ext = by_listing_sku.get(sku), by_listing_ext.get(entry.external_id)
        if at_sku is not None and at_sku[1] == entry.external_id:
            linked.append((entry, at_sku[2], at_sku[0]))
            continue
        if at_sku is not None or at_ext is not None:
            if at_ext is not None:
                other = f"SKU {at_ext[1]}"
            else:
                other = f"platform id {at_sku[1]}" if at_sku is not None and at_sku[1] else "no platform id"
            result.problems.append(
                _problem(entry, "already_linked", f"A listing of this channel already has it, with {other}.")
            )
            continue
        found = mapped_codes.get(mapping[sku]) if sku in mapping else by_code.get(sku) or by_item.get(sku)
        if found is not None:
            new_links.append((entry, found[0]))
            product_codes[found[0]] = found[1]
        elif create_missing:
            to_create.append(entry)
        else:
            result.platform_only.append({"sku": sku, "external_id": entry.external_id, "title": entry.title})
    existing_items = _items_by_sku([entry.sku.strip() for entry in to_create]) if to_create else {}
    # An item with that SKU exists with several standard products: which one is sold is not ours to guess.
    # One with none gets its standard product made.
    with_standard = _items_with_standard(list(existing_items.values())) if existing_items else set()
    ambiguous = [e for e in to_create if existing_items.get(e.sku.strip()) in with_standard]
    for entry in ambiguous:
        result.platform_only.append({"sku": entry.sku.strip(), "external_id": entry.external_id, "title": entry.title})
    to_create = [e for e in to_create if e not in ambiguous]
    # What Stockroom would push: an existing listing's own quantity; a new one's by the channel's defaults.
    shown = listings_availability([listing for *_, listing in linked])
    would = products_channel_quantity(channel, [product for _, product in new_links])
    for entry, product, listing in linked:
        known = shown.get(listing)
        result.matched.append(
            _match(entry, product_codes[product], location_id, known.available if known is not None else 0)
        )
    for entry, product in new_links:
        result.matched.append(_match(entry, product_codes[product], location_id, would[product]))
    for entry in to_create:
        result.matched.append(_match(entry, entry.sku.strip(), location_id, 0))
    matched_products = [product for _, product in new_links] + [product for _, product, _ in linked]
    with connection.cursor() as cursor:
        cursor.execute(_STOCKROOM_ONLY, {"matched": sorted(set(matched_products)), "channel": channel.pk})
        result.stockroom_only = [{"sku": code, "product": code} for _pk, code in cursor.fetchall()]
    result.created = len(new_links) + len(to_create)
    return _Plan(result, new_links, to_create, existing_items)


def _problem(entry: CatalogEntry, code: str, detail: str) -> dict[str, Any]:
    return {"sku": entry.sku, "external_id": entry.external_id, "code": code, "detail": detail}


def _match(entry: CatalogEntry, product: str, location_id: str, quantity: int) -> dict[str, Any]:
    return {
        "sku": entry.sku.strip(),
        "external_id": entry.external_id,
        "product": product,
        "platform_quantity": entry_quantity(entry, location_id),
        "stockroom_quantity": quantity,
    }


def channel_link(
    *,
    channel: Channel,
    apply: bool = False,
    mapping: Mapping[str, str] | None = None,
    create_missing: bool = False,
    actor: str = "",
    catalog: Catalog | None = None,
) -> LinkResult:
    """Link the platform's variants to products by SKU (see the module's docstring): a preview, or with
    ``apply`` the listings created (through ``listings_create``), with ``create_missing`` the missing
    items and standard products too (``items_create``/``products_create``). Idempotent.

    ``catalog``: a catalog read already; by default the channel's fresh background read, else read now.
    The answer is ``LinkResult.as_dict()``: matched, platform_only, stockroom_only, problems, created.
    """
    catalog = catalog if catalog is not None else channel_catalog(channel=channel)
    location_id = channel_platform_location_id(channel)
    mapping = dict(mapping or {})
    if not apply:
        return _plan(channel, catalog, mapping, create_missing, location_id).result
    with transaction.atomic():
        channel_for_update(channel.pk)  # two applies at once take turns: the second links nothing twice
        plan = _plan(channel, catalog, mapping, create_missing, location_id)
        links = [(entry, product) for entry, product in plan.new_links]
        if plan.to_create:
            links += _create_missing(plan.to_create, plan.existing_items)
        # The product by its id alone: the listing row needs only product_id, so nothing is read.
        listings_create(
            rows=[
                {
                    "channel": channel,
                    "channel_sku": entry.sku.strip(),
                    "external_id": entry.external_id,
                    "product": Product(pk=product),
                }
                for entry, product in links
            ]
        )
        plan.result.created = len(links)
        plan.result.applied = True
    log.info(
        "channel_linked",
        channel=channel.code,
        created=plan.result.created,
        made_products=len(plan.to_create),
        matched=len(plan.result.matched),
        problems=len(plan.result.problems),
        by=actor,
    )
    return plan.result


def _create_missing(entries: list[CatalogEntry], existing_items: dict[str, int]) -> list[tuple[CatalogEntry, int]]:
    """Items (unit piece) and standard products (code = SKU) for variants nothing matched, in bulk."""
    new_items = items_create(
        rows=[
            {"sku": e.sku.strip(), "name": (e.title or e.sku)[:200], "unit": Item.Unit.PIECE}
            for e in entries
            if e.sku.strip() not in existing_items
        ]
    )
    item_ids = {**existing_items, **{item.sku: item.pk for item in new_items}}
    products = products_create(
        rows=[
            (
                {"code": e.sku.strip(), "name": (e.title or e.sku)[:200], "kind": Product.Kind.STANDARD},
                [ComponentSpec(item=Item(pk=item_ids[e.sku.strip()]), quantity=1)],  # by id: nothing read
            )
            for e in entries
        ]
    )
    return [(entry, product.pk) for entry, product in zip(entries, products, strict=True)]
