"""Going live on an existing shop, and pausing: the channel's ``state`` and what changes it.

- ``channel_pause`` / ``channel_resume``: operations stop and restart pushing (a platform incident).
  While a channel is ``setup`` or ``paused`` nothing is sent to the platform (``channel_push_configured``
  says no to the pusher and to reconciliation, the sweep skips it); its sync work stays queued, and
  orders still come in.
- ``channel_opening_stock``: the platform's quantities of the linked items, taken as opening stock at a
  Stockroom location (``count`` movements through the stock owner, reference ``opening:<channel>``, once).
- ``channel_go_live_blockers`` / ``channel_first_push`` / ``channel_go_live``: what stops a go-live, what
  the first push will send (the pusher's own computation, ``push.listings_push_plan``), and going live:
  the platform's order webhooks subscribed to ``STOCKROOM_PUBLIC_URL``, the state ``live``, every
  listing queued for a full push at tier 2.

Each change of state is logged (``channel_state_changed``) with who did it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework import status

from apps.catalog.models import Location, Product, ProductComponent
from apps.catalog.services.opening import opening_counts_book, opening_counts_booked
from apps.catalog.signals import Tier
from apps.channels.connectors.base import Catalog, ConnectorError, WebhookSubscription
from apps.channels.locks import channel_for_update
from apps.channels.models import Channel, ChannelWebhook, Listing
from apps.channels.services.connection import channel_connector, channel_credentials
from apps.channels.services.link import (
    PlatformUnavailable,
    channel_catalog,
    channel_platform,
    channel_platform_location_id,
    entry_quantity,
    short_reason,
)
from apps.channels.services.push import listings_push_plan
from apps.channels.services.work import sync_work_enqueue
from apps.core.errors import Conflict, DomainError, InvalidValue
from apps.core.secrets import SecretsUnreadable

log = structlog.get_logger("stockroom.channels")


class ChannelStateRefused(Conflict):
    code = "channel_state_refused"


class GoLiveRefused(Conflict):
    """The channel cannot go live yet; ``reasons``: [{code, detail}] (no_locations, no_platform_location,
    no_linked_listings, inactive, not_configured, no_public_url)."""

    code = "go_live_refused"
    default_detail = "The channel cannot go live yet."


class GoLiveNeedsConfirmation(Conflict):
    """Nothing was done: ``first_push`` is what going live will send; call again with ``confirm``."""

    code = "go_live_needs_confirmation"
    default_detail = "Going live sends these quantities to the platform; confirm to go live."


class OpeningStockRefused(DomainError):
    code = "opening_stock_refused"
    status_code = status.HTTP_400_BAD_REQUEST


# --- Pause and resume ------------------------------------------------------------------------------


def _state_set(channel: Channel, state: str, *, actor: str, reason: str) -> Channel:
    """Set the state under the channel's lock (the caller's transaction); logs who did it."""
    locked = channel_for_update(channel.pk)
    before = locked.state
    if before != state:
        locked.state = state
        locked.save(update_fields=["state"])
        log.info("channel_state_changed", channel=locked.code, state=state, was=before, reason=reason, by=actor)
    channel.state = locked.state
    return locked


@transaction.atomic
def channel_pause(*, channel: Channel, actor: str) -> Channel:
    """Stop sending quantities to the platform (a platform incident): work stays queued, orders still come in.

    A paused channel stays paused; a channel in ``setup`` has nothing to pause (ChannelStateRefused).
    """
    if channel.state == Channel.State.SETUP:
        raise ChannelStateRefused("The channel is not live yet; there is nothing to pause.")
    return _state_set(channel, Channel.State.PAUSED, actor=actor, reason="pause")


@transaction.atomic
def channel_resume(*, channel: Channel, actor: str) -> Channel:
    """Send quantities again: the channel is ``live`` and every listing is queued at tier 2 (those whose
    quantity the platform already shows are settled without a request). Only a paused channel resumes;
    one in ``setup`` goes live (``channel_go_live``)."""
    if channel.state == Channel.State.SETUP:
        raise ChannelStateRefused("The channel has not gone live yet: use go-live, which previews the first push.")
    was = channel.state
    locked = _state_set(channel, Channel.State.LIVE, actor=actor, reason="resume")
    if was != Channel.State.LIVE:
        sync_work_enqueue(channel_ids=[locked.pk], priority=Tier.MANUAL, reason="resumed")
    return locked


# --- Opening stock ---------------------------------------------------------------------------------


@dataclass
class OpeningStock:
    """``channel_opening_stock``'s answer: one line per linked item, and what was booked."""

    location: str
    platform_location: str
    lines: list[dict[str, Any]] = field(default_factory=list)
    applied: bool = False
    booked: int = 0  # count movements written by this call
    already_booked: int = 0  # items whose opening stock was booked before (nothing booked again)

    def as_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "platform_location": self.platform_location,
            "applied": self.applied,
            "booked": self.booked,
            "already_booked": self.already_booked,
            "results": self.lines,
        }


def opening_reference(channel: Channel) -> str:
    return f"opening:{channel.code}"


def channel_opening_stock(
    *,
    channel: Channel,
    platform_location: str,
    location_code: str,
    apply: bool = False,
    actor: str = "",
    catalog: Catalog | None = None,
) -> OpeningStock:
    """The platform's quantities at ``platform_location`` (blank: the channel's own platform location) for the
    channel's linked items, against Stockroom's
    on hand at ``location_code``; with ``apply`` each is booked as a ``count`` movement (reference
    ``opening:<channel>``), once per item: a second apply books nothing and says so (``already_booked``).

    A linked item is the one item of a listing's standard product (multipacks and bundles are left out:
    the platform's count of packs says nothing exact about loose items); two variants of one item add up.
    Each line: sku (the item's), item, platform_quantity, on_hand, difference, booked (before this call).
    """
    location = Location.objects.filter(code=location_code).first()
    if location is None:
        raise InvalidValue(f"Unknown location {location_code}.", errors={"location": ["Unknown location."]})
    platform_location = platform_location or channel_platform_location_id(channel)
    catalog = catalog if catalog is not None else channel_catalog(channel=channel)
    by_external = {entry.external_id: entry for entry in catalog.entries if entry.external_id}
    rows = (
        Listing.objects.filter(channel=channel, product__kind=Product.Kind.STANDARD)
        .exclude(external_id="")
        .values_list("external_id", "product_id")
    )
    components = dict(
        ProductComponent.objects.filter(product__listings__channel=channel, product__kind=Product.Kind.STANDARD)
        .values_list("product_id", "item_id")
        .distinct()
    )
    quantities: dict[int, int] = defaultdict(int)
    for external_id, product_id in rows:
        entry = by_external.get(external_id)
        if entry is None or product_id not in components or entry.platform_managed:
            continue
        quantity = entry_quantity(entry, platform_location)
        if quantity is not None:
            quantities[components[product_id]] += max(0, quantity)
    prefix = opening_reference(channel)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.id, i.sku, s.on_hand FROM catalog_item i
              LEFT JOIN catalog_stocklevel s ON s.item_id = i.id AND s.location_id = %s
             WHERE i.id = ANY(%s::bigint[])
            """,
            [location.pk, list(quantities)],
        )
        rows_now = cursor.fetchall()
    skus = {item: sku for item, sku, _ in rows_now}
    levels = {item: on_hand for item, _, on_hand in rows_now if on_hand is not None}
    booked_before = opening_counts_booked(key_prefix=prefix, item_ids=list(quantities))
    result = OpeningStock(location=location.code, platform_location=platform_location)
    for item_id in sorted(quantities, key=lambda item: skus.get(item, "")):
        on_hand = levels.get(item_id, 0)
        result.lines.append(
            {
                "sku": skus.get(item_id, ""),
                "item": item_id,
                "platform_quantity": quantities[item_id],
                "on_hand": on_hand,
                "difference": quantities[item_id] - on_hand,
                "booked": item_id in booked_before,
            }
        )
    if apply:
        done = opening_counts_book(
            location=location, quantities=dict(quantities), reference=prefix, key_prefix=prefix, actor=actor
        )
        result.applied = True
        result.booked = len(done.movements)
        result.already_booked = len(done.already_booked)
        log.info("channel_opening_stock", channel=channel.code, location=location.code, booked=result.booked, by=actor)
    else:
        result.already_booked = len(booked_before)
    return result


# --- Go live ---------------------------------------------------------------------------------------


def webhook_address(channel: Channel) -> str:
    """Where the platform delivers the channel's order webhooks: ``STOCKROOM_PUBLIC_URL`` + the webhook route;
    "" when no public URL is set."""
    base = (getattr(settings, "STOCKROOM_PUBLIC_URL", "") or "").rstrip("/")
    if not base:
        return ""
    path = reverse("channel-platform-webhook", kwargs={"code": channel.code, "connector": channel.connector})
    return base + path


def channel_linked_listings(channel: Channel) -> Any:
    """The listings go-live pushes: active, and on a platform connector with the platform's id."""
    listings = Listing.objects.filter(channel=channel, is_active=True)
    if channel.connector != "stockroom":
        listings = listings.exclude(external_id="")
    return listings


def channel_go_live_blockers(channel: Channel) -> list[dict[str, str]]:
    """Why the channel cannot go live now ([] when it can): each {code, detail}."""
    reasons = []
    if not channel.is_active:
        reasons.append({"code": "inactive", "detail": "The channel is not active."})
    if not channel.channel_locations.exists():
        reasons.append(
            {"code": "no_locations", "detail": "The channel sells from no location: every listing would show 0."}
        )
    try:
        connector = channel_connector(channel)
    except (LookupError, ImportError) as err:
        reasons.append({"code": "not_configured", "detail": short_reason(err)})
        connector = None
    if connector is not None:
        no_location = "location_id" in connector.settings_serializer().fields and not channel_platform_location_id(
            channel
        )
        if no_location:
            reasons.append(
                {"code": "no_platform_location", "detail": "Choose the platform location Stockroom sets quantities at."}
            )
        settings_check = connector.settings_serializer(data=dict(channel.settings or {}))
        settings_bad = not settings_check.is_valid() and set(settings_check.errors) - {"location_id"}
        try:
            credentials_ok = connector.credentials_serializer(data=channel_credentials(channel)).is_valid()
        except SecretsUnreadable:
            credentials_ok = False
        if settings_bad or not credentials_ok:
            reasons.append(
                {"code": "not_configured", "detail": f"{connector.label}: settings or credentials are missing."}
            )
        if connector.webhook_topics and not webhook_address(channel):
            reasons.append(
                {
                    "code": "no_public_url",
                    "detail": "STOCKROOM_PUBLIC_URL is not set: the platform's order webhooks have no address.",
                }
            )
    if not channel_linked_listings(channel).exists():
        reasons.append({"code": "no_linked_listings", "detail": "No listing is linked to the platform yet."})
    return reasons


@dataclass
class FirstPush:
    """What going live sends first: ``changes`` lists each listing whose platform quantity changes."""

    listings: int = 0  # every listing the full push sends
    changes: list[dict[str, Any]] = field(default_factory=list)  # {listing, sku, external_id, from, to, held}
    to_zero: int = 0  # of the changes, how many go to 0
    platform_quantities: dict[int, int] = field(default_factory=dict)  # listing id -> the platform's quantity now

    def as_dict(self) -> dict[str, Any]:
        return {"listings": self.listings, "changes": len(self.changes), "to_zero": self.to_zero, "items": self.changes}


def channel_first_push(*, channel: Channel, catalog: Catalog | None = None) -> FirstPush:
    """The first full push of a go-live, computed as the pusher computes it (``listings_push_plan``) against
    the platform's quantities now (``from``: the compare value the push will use). A change: ``from`` differs
    from ``to``, or the platform's quantity is unknown (``from`` null). ``held``: a raise the pusher holds back
    while the channel's orders are not imported yet (it goes out once they are)."""
    catalog = catalog if catalog is not None else channel_catalog(channel=channel)
    location_id = channel_platform_location_id(channel)
    by_external = {entry.external_id: entry for entry in catalog.entries if entry.external_id}
    listings = list(channel_linked_listings(channel).order_by("channel_sku").values_list("pk", "external_id"))
    platform: dict[int, int] = {}
    for pk, external_id in listings:
        entry = by_external.get(external_id)
        quantity = entry_quantity(entry, location_id) if entry is not None else None
        if quantity is not None:
            platform[pk] = quantity
    planned = listings_push_plan(channel, {pk: platform.get(pk) for pk, _ in listings})
    result = FirstPush(listings=len(planned), platform_quantities=platform)
    external = dict(listings)
    for pk, _ in listings:
        plan = planned.get(pk)
        if plan is None:
            continue
        before = platform.get(pk)
        if before == plan.available and not plan.held:
            continue
        result.changes.append(
            {
                "listing": pk,
                "sku": plan.sku,
                "external_id": external[pk],
                "from": before,
                "to": before if plan.held else plan.available,
                "held": plan.held,
            }
        )
        if not plan.held and plan.available == 0:
            result.to_zero += 1
    return result


@dataclass
class GoLive:
    channel: Channel
    first_push: FirstPush
    webhooks: list[ChannelWebhook]
    queued: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.channel.state,
            "first_push": self.first_push.as_dict(),
            "queued": self.queued,
            "webhooks": [channel_webhook_dict(hook) for hook in self.webhooks],
        }


def channel_webhook_dict(hook: ChannelWebhook) -> dict[str, Any]:
    return {"id": hook.platform_id, "topic": hook.topic, "address": hook.address, "active": hook.active}


def channel_go_live(
    *, channel: Channel, confirm: bool = False, actor: str = "", catalog: Catalog | None = None
) -> GoLive:
    """Go live: refused with the reasons (GoLiveRefused) while ``channel_go_live_blockers`` has any; without
    ``confirm`` GoLiveNeedsConfirmation carrying ``first_push`` (nothing done); with it, the platform's order
    webhooks are subscribed to ``webhook_address`` (existing ones reused: calling again subscribes nothing
    twice), the channel becomes ``live``, each listing remembers the platform's quantity as the compare value
    of its first push, and every listing is queued at tier 2 (``repush``): the first push is ``first_push``.
    """
    reasons = channel_go_live_blockers(channel)
    if reasons:
        raise GoLiveRefused(
            "The channel cannot go live yet: " + "; ".join(r["detail"] for r in reasons), reasons=reasons
        )
    first = channel_first_push(channel=channel, catalog=catalog)
    if not confirm:
        raise GoLiveNeedsConfirmation(first_push=first.as_dict())
    webhooks = channel_webhooks_subscribe(channel=channel)
    with transaction.atomic():
        locked = channel_for_update(channel.pk)
        if first.platform_quantities:
            with connection.cursor() as cursor:
                cursor.execute(
                    """
                    UPDATE channels_listing AS l SET last_pushed_qty = p.qty, platform_sold_units = 0
                      FROM unnest(%s::bigint[], %s::int[]) AS p(listing_id, qty)
                     WHERE l.id = p.listing_id AND l.channel_id = %s
                    """,
                    [list(first.platform_quantities), list(first.platform_quantities.values()), locked.pk],
                )
        was = locked.state
        locked = _state_set(channel, Channel.State.LIVE, actor=actor, reason="go_live")
        queued = sync_work_enqueue(
            listing_ids=list(channel_linked_listings(locked).values_list("pk", flat=True)),
            priority=Tier.MANUAL,
            reason="go_live",
            repush=True,
        ).listings
    log.info(
        "channel_went_live",
        channel=locked.code,
        was=was,
        listings=first.listings,
        changes=len(first.changes),
        to_zero=first.to_zero,
        webhooks=len(webhooks),
        at=timezone.now().isoformat(),
        by=actor,
    )
    return GoLive(channel=locked, first_push=first, webhooks=webhooks, queued=queued)


def channel_webhooks_subscribe(*, channel: Channel) -> list[ChannelWebhook]:
    """Make sure the platform calls ``webhook_address`` for each of the connector's order topics
    (``Connector.webhooks_subscribe``: existing subscriptions reused) and keep what it answered on the channel
    (``ChannelWebhook``; earlier ones it no longer lists are kept as inactive). [] for a connector with no
    webhook topics. Raises PlatformUnavailable when the platform refuses."""
    connector, ref = channel_platform(channel)
    if not connector.webhook_topics:
        return []
    address = webhook_address(channel)
    if not address:
        raise GoLiveRefused(
            "STOCKROOM_PUBLIC_URL is not set.",
            reasons=[{"code": "no_public_url", "detail": "STOCKROOM_PUBLIC_URL is not set."}],
        )
    try:
        subscriptions = connector.webhooks_subscribe(ref, address)
    except ConnectorError as err:
        log.info("channel_webhooks_subscribe_failed", channel=channel.code, error=short_reason(err))
        raise PlatformUnavailable(f"{connector.label}: {short_reason(err)}") from err
    except Exception as err:  # a connector's bug: a short answer, the channel stays as it was
        log.exception("channel_webhooks_subscribe_crashed", channel=channel.code)
        raise PlatformUnavailable(f"{connector.label}: the connector failed ({type(err).__name__}).") from err
    return webhooks_record(channel=channel, subscriptions=subscriptions)


@transaction.atomic
def webhooks_record(*, channel: Channel, subscriptions: list[WebhookSubscription]) -> list[ChannelWebhook]:
    """Keep the platform's answer on the channel: one row per subscription id (updated), others inactive."""
    seen = []
    for sub in subscriptions:
        hook, _ = ChannelWebhook.objects.update_or_create(
            channel=channel,
            platform_id=sub.id,
            defaults={"topic": sub.topic, "address": sub.address, "active": sub.active},
        )
        seen.append(hook)
    ChannelWebhook.objects.filter(channel=channel).exclude(platform_id__in=[s.id for s in subscriptions]).update(
        active=False
    )
    return seen
