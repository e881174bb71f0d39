"""Channel sync and the availability cache hear every change that can move a listing's quantity, in the
writer's transaction; configuration changes bump the whole cache after commit."""

from __future__ import annotations

from functools import partial
from typing import Any

import structlog
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.catalog.models import Incident, Location, ProductComponent
from apps.catalog.signals import (
    Tier,
    incident_cause_changed,
    incident_opened,
    products_changed,
    stock_changed,
)
from apps.channels import availability_cache
from apps.channels.models import Channel, ChannelLocation, Listing
from apps.channels.selectors import ZERO_ON_INCIDENT
from apps.channels.services.work import (
    STATEMENT_PART,
    channel_kick,
    channel_kicked,
    sync_dispatch,
    sync_kicks,
    sync_work_enqueue,
)
from apps.channels.stream.publish import stream_publish_after_commit

log = structlog.get_logger("stockroom.sync")


@receiver(stock_changed, dispatch_uid="channels.stock_changed")
def on_stock_changed(
    sender: Any,
    *,
    pairs: list[tuple[int, int]],
    priority: Tier,
    reason: str,
    statement: dict[str, tuple[Any, ...]] | None = None,
    **_: Any,
) -> None:
    done = (statement or {}).get(STATEMENT_PART.name)
    if done is None:
        availability_cache.on_stock_changed(sender, pairs=pairs)
        sync_work_enqueue(pairs=list(pairs), priority=Tier(priority), reason=reason)
    else:  # our part of the writer's statement upserted the work; only the bumps and the dispatch are left
        listing_ids, channel_ids = done
        channels_by_priority = {int(Tier(priority)): sorted({int(c) for c in channel_ids})}
        transaction.on_commit(
            partial(_after_statement_commit, listing_ids=list(listing_ids), channels_by_priority=channels_by_priority)
        )


def _after_statement_commit(*, listing_ids: list[int], channels_by_priority: dict[int, list[int]]) -> None:
    """After a single-statement write commits, one Redis round trip: the cache's version bumps for the
    listings it reached and the kick claims of the channels to push (``sync_dispatch``'s), then the push
    tasks claimed; open streams are told as after any move (``availability_cache._listings_changed``). Each
    part fails as it would alone: an epoch bump for the cache, the sweep for pushes."""
    kicks = sync_kicks(channels_by_priority)
    claims = [partial(_kick_claim_on, channel_id=channel_id, countdown=countdown) for channel_id, countdown in kicks]
    answers = availability_cache.invalidation_guarded(
        partial(availability_cache.availability_invalidate, listing_ids=listing_ids, also=claims)
    )
    stream_publish_after_commit(listing_ids=listing_ids)  # open streams hear the new numbers, as after any move
    if not isinstance(answers, list):  # Redis was not reached: the claims go their own way (or the sweep's)
        if kicks:
            sync_dispatch(channels_by_priority=channels_by_priority)
        return
    try:
        for (channel_id, countdown), claimed in zip(kicks, answers, strict=True):
            if claimed:
                channel_kicked(channel_id=channel_id, countdown=countdown)
    except Exception as err:  # the sweep is the safety net; a commit never fails because of dispatch
        log.warning("sync_dispatch_failed", error=str(err))


def _kick_claim_on(pipe: Any, *, channel_id: int, countdown: float) -> None:
    channel_kick(channel_id=channel_id, countdown=countdown, pipe=pipe)


@receiver(products_changed, dispatch_uid="channels.products_changed")
def on_products_changed(sender: Any, *, product_ids: list[int], priority: Tier, reason: str, **_: Any) -> None:
    availability_cache.on_configuration_changed(sender)
    sync_work_enqueue(product_ids=list(product_ids), priority=Tier(priority), reason=reason)


def connect_configuration_receivers() -> None:
    """Anything else a listing's quantity depends on: the locations a channel sells from, their validity,
    the channel's and the listing's settings, the product's make-up."""
    for model in (Location, ProductComponent, Channel, ChannelLocation):
        for signal in (post_save, post_delete):
            signal.connect(
                availability_cache.on_configuration_changed,
                sender=model,
                dispatch_uid=f"availability_cache_{signal is post_save}_{model.__name__}",
            )
    for signal in (post_save, post_delete):
        signal.connect(
            availability_cache.on_listing_changed,
            sender=Listing,
            dispatch_uid=f"availability_cache_{signal is post_save}_Listing",
        )


@receiver(incident_opened, dispatch_uid="channels.incident_opened")
def on_incident_opened(sender: Any, *, incident_id: int, **_: Any) -> None:
    """An oversell (or a store sale into reserved stock): push at tier 1 to every listing selling the item.

    The pusher decides the 0 when it pushes, from whether the incident's cause still holds.
    """
    incident = Incident.objects.filter(pk=incident_id).only("kind", "item_id").first()
    if incident is None or incident.kind not in ZERO_ON_INCIDENT or incident.item_id is None:
        return
    with transaction.atomic():
        sync_work_enqueue(
            item_ids=[incident.item_id],
            priority=Tier.SALE,
            reason=f"incident:{incident.kind}",
            repush=True,
        )


@receiver(incident_cause_changed, dispatch_uid="channels.incident_cause_changed")
def on_incident_cause_changed(sender: Any, *, item_ids: list[int], reason: str, **_: Any) -> None:
    """An incident's cause may be gone without a stock move (an oversold order closed, staff resolved it):
    every listing of the items is pushed again at tier 1, with the truth once nothing holds it at 0."""
    sync_work_enqueue(item_ids=list(item_ids), priority=Tier.SALE, reason=reason)
