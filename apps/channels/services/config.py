"""Channel and listing settings, the order watermark, and "sync now": every change queues sync work."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import structlog
from django.db import IntegrityError, connection, transaction
from django.db.models import F, ProtectedError
from django.db.models.functions import Least
from django.utils import timezone

from apps.catalog.signals import Tier
from apps.channels.connectors import connector_named
from apps.channels.locks import channel_for_update, sync_work_for_update
from apps.channels.models import STOCKROOM_CONNECTOR, Channel, ChannelLocation, Listing, SyncWork
from apps.channels.services.connection import (
    ConnectorConfigInvalid,
    channel_credentials,
    connector_config_clean,
    credentials_rebind_check,
    push_url_rebind_check,
)
from apps.channels.services.work import sync_dispatch, sync_work_enqueue
from apps.core.errors import Conflict
from apps.core.secrets import SecretsUnreadable, encrypt_json

log = structlog.get_logger("stockroom.channels")


class PlatformAccountTaken(Conflict):
    """Another channel already imports this platform account's orders (each order would be imported twice)."""

    code = "platform_account_taken"


def _platform_account(connector: str, settings: Mapping[str, Any], *, exclude_pk: int | None = None) -> str:
    """The account a channel on ``connector`` with these settings imports from; refused when another has it."""
    account = connector_named(connector).account(settings or {})
    if not account:
        return ""
    others = Channel.objects.filter(connector=connector, platform_account=account)
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    other = others.first()
    if other is not None:
        raise PlatformAccountTaken(
            f"Channel {other.code} already imports the orders of {account}: a second channel on the same "
            "account would import every order twice. Use that channel (several locations of one shop belong "
            "to one channel), or point that channel elsewhere first.",
        )
    return account


CHANNEL_FIELDS = (
    "code", "name", "kind", "push_url", "secret", "rate_per_s", "burst", "batch_size", "coefficient", "buffer",
    "is_active", "can_import", "import_cap_units", "connector", "settings",
)  # fmt: skip
LISTING_FIELDS = (
    "channel", "channel_sku", "external_id", "product", "coefficient", "buffer", "max_qty", "end_when", "is_active",
)  # fmt: skip
# A bulk write of at least this many listings refreshes the planner's statistics before it goes on.
ANALYZE_AFTER_ROWS = 1000
# Changing these can change what the channel is told, or where it is told.
_CHANNEL_SYNC_FIELDS = {"push_url", "coefficient", "buffer", "is_active", "connector", "settings", "credentials"}
# Changing these sends every quantity again, even one the channel was told already: it may be another place.
_CHANNEL_REPUSH_FIELDS = {"push_url", "connector", "settings", "credentials"}


def _set_locations(channel: Channel, location_ids: Sequence[int]) -> None:
    """The channel sells from these locations, in this order (the order orders take from them)."""
    ChannelLocation.objects.filter(channel=channel).delete()
    ChannelLocation.objects.bulk_create(
        [ChannelLocation(channel=channel, location_id=loc, priority=i) for i, loc in enumerate(location_ids)]
    )


def _orders_counted_from_now(channel: Channel) -> None:
    """A channel just connected to a platform that sends orders: what it sold before now is already out of
    the counted stock, so its order intake starts here (the order watermark), not at the platform's first order."""
    if connector_named(channel.connector).receives_orders:
        locked = channel_watermark_set(channel=channel, orders_imported_until=timezone.now())
        channel.orders_pending_until, channel.orders_imported_until = (
            locked.orders_pending_until,
            locked.orders_imported_until,
        )


def channel_initial_state(connector: str) -> str:
    """A channel on a platform connector starts in ``setup`` (nothing pushed until it goes live); one on the
    push protocol starts ``live``, as it always did."""
    return Channel.State.LIVE if connector == STOCKROOM_CONNECTOR else Channel.State.SETUP


@transaction.atomic
def channel_create(*, fields: Mapping[str, Any], location_ids: Sequence[int] = (), state: str | None = None) -> Channel:
    """A new channel. ``fields`` may carry ``connector``, its ``settings`` and ``credentials`` (validated by
    the connector, ConnectorConfigInvalid otherwise; credentials are stored encrypted).

    ``state``: by default ``channel_initial_state`` (``setup`` on a platform connector); code that sets up a
    channel it knows to be ready (a test, a demo) may give ``live``.
    """
    values = {k: v for k, v in fields.items() if k in CHANNEL_FIELDS}
    values.setdefault("connector", STOCKROOM_CONNECTOR)
    values["state"] = state or channel_initial_state(values["connector"])
    settings, credentials = connector_config_clean(
        connector=values["connector"], settings=values.get("settings"), credentials=fields.get("credentials")
    )
    values["settings"] = settings
    values["platform_account"] = _platform_account(values["connector"], settings)
    try:
        with transaction.atomic():
            channel = Channel.objects.create(**values, credentials_encrypted=encrypt_json(credentials or {}))
    except IntegrityError as err:  # another request took the account meanwhile
        if "channel_one_per_platform_account" not in str(err):
            raise
        _platform_account(values["connector"], settings)
        raise
    _set_locations(channel, location_ids)
    _location_map_check(channel)
    if channel.connector != STOCKROOM_CONNECTOR:
        _orders_counted_from_now(channel)
    log.info("channel_created", channel=channel.code, connector=channel.connector, state=channel.state)
    return channel


def _location_map_check(channel: Channel) -> None:
    """Every Stockroom location a platform location shows (``settings.location_map``) is one the channel sells
    from: the map says where its stock is shown, the channel's locations what it may sell."""
    mapped = (channel.settings or {}).get("location_map") or {}
    codes = {code for place_codes in mapped.values() for code in (place_codes or [])}
    if not codes:
        return
    selling = set(ChannelLocation.objects.filter(channel=channel).values_list("location__code", flat=True))
    missing = sorted(codes - selling)
    if missing:
        raise ConnectorConfigInvalid(
            errors={
                "settings": {
                    "location_map": [
                        f"Not a location this channel sells from: {', '.join(missing)}. Add it to the channel's "
                        "locations, or map another."
                    ]
                }
            }
        )


def _connector_changes(channel: Channel, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The connector, settings and credentials the update sets, validated; {} when it touches none of them."""
    if not {"connector", "settings", "credentials"} & set(fields):
        return {}
    connector = fields.get("connector", channel.connector)
    same_platform = connector == channel.connector
    stored: dict[str, Any] = {}
    if same_platform:
        try:
            stored = channel_credentials(channel)
        except SecretsUnreadable:
            stored = {}  # unreadable with today's key: whatever is given now replaces them
    settings, credentials = connector_config_clean(
        connector=connector,
        settings=fields.get("settings", channel.settings),
        credentials=fields.get("credentials"),
        stored_credentials=stored,
    )
    if same_platform:
        credentials_rebind_check(
            connector=connector,
            stored_settings=channel.settings or {},
            settings=settings,
            stored_credentials=stored,
            credentials=fields.get("credentials"),
        )
    if credentials is None and not same_platform:
        credentials = {}  # another platform's credentials mean nothing here
    changes: dict[str, Any] = {
        "connector": connector,
        "settings": settings,
        "platform_account": _platform_account(connector, settings, exclude_pk=channel.pk),
    }
    if credentials is not None and (credentials != stored or not same_platform):
        changes["credentials"] = credentials
    return changes


@transaction.atomic
def channel_update(
    *,
    channel: Channel,
    fields: Mapping[str, Any],
    location_ids: Sequence[int] | None = None,
    priority: Tier = Tier.BACKGROUND,
) -> Channel:
    """Change settings; anything that can move a quantity queues every listing.

    At tier 3 by default (settings changed through the API); a merchant's hand edit in the
    admin asks for tier 2, as staff's "sync now" does.
    """
    if "push_url" in fields:
        push_url_rebind_check(
            stored_url=channel.push_url,
            url=fields["push_url"] or "",
            has_secret=bool(channel.secret),
            secret_given="secret" in fields,
        )
    connector_changes = _connector_changes(channel, {k: v for k, v in fields.items() if k != "platform_account"})
    fields = {**{k: v for k, v in fields.items() if k != "platform_account"}, **connector_changes}
    changed = {k for k, v in fields.items() if k in (*CHANNEL_FIELDS, "platform_account") and getattr(channel, k) != v}
    connected = "connector" in changed
    for name in changed:
        setattr(channel, name, fields[name])
    if "credentials" in connector_changes:
        channel.credentials_encrypted = encrypt_json(connector_changes["credentials"])
    if changed or "credentials" in connector_changes:
        names = changed | ({"credentials_encrypted"} if "credentials" in connector_changes else set())
        channel.save(update_fields=sorted(names))
    if "credentials" in connector_changes:
        changed.add("credentials")  # named in the log and the sync reason, never the values
    if connected and channel.connector != STOCKROOM_CONNECTOR:
        _orders_counted_from_now(channel)
    if location_ids is not None:
        current = list(channel.channel_locations.order_by("priority").values_list("location_id", flat=True))
        if current != list(location_ids):
            _set_locations(channel, location_ids)
            changed.add("locations")
    if changed & {"settings", "locations"}:
        _location_map_check(channel)
    if changed & (_CHANNEL_SYNC_FIELDS | {"locations"}):
        sync_work_enqueue(
            channel_ids=[channel.pk],
            priority=priority,
            reason="channel_settings",
            repush=bool(changed & _CHANNEL_REPUSH_FIELDS),
        )
    log.info("channel_updated", channel=channel.code, fields=sorted(changed))
    return channel


def channel_delete(*, channel: Channel) -> None:
    """Remove a channel with its listings and tokens; refused while other records (orders) refer to it."""
    try:
        with transaction.atomic():
            channel.delete()
    except ProtectedError as err:
        raise Conflict("The channel still has orders; deactivate it instead (is_active: false).") from err
    log.info("channel_deleted", channel=channel.code)


@transaction.atomic
def listing_create(*, fields: Mapping[str, Any], priority: Tier = Tier.BACKGROUND) -> Listing:
    listing = Listing.objects.create(**{k: v for k, v in fields.items() if k in LISTING_FIELDS})
    sync_work_enqueue(listing_ids=[listing.pk], priority=priority, reason="listing_created")
    return listing


@transaction.atomic
def listings_create(*, rows: Sequence[Mapping[str, Any]], priority: Tier = Tier.BACKGROUND) -> list[Listing]:
    """Many new listings at once (a catalog import): as ``listing_create``, one sync-work upsert for them all."""
    listings = Listing.objects.bulk_create(
        [Listing(**{k: v for k, v in fields.items() if k in LISTING_FIELDS}) for fields in rows], batch_size=2000
    )
    if len(listings) >= ANALYZE_AFTER_ROWS:
        # Thousands of rows the planner has no statistics of yet: the statements that follow in this transaction
        # (their sync work, their quantities) would loop over them row by row. ANALYZE counts our own new rows.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE channels_listing")
    sync_work_enqueue(listing_ids=[listing.pk for listing in listings], priority=priority, reason="listing_created")
    return listings


@transaction.atomic
def listing_update(*, listing: Listing, fields: Mapping[str, Any], priority: Tier = Tier.BACKGROUND) -> Listing:
    """Change a listing's settings and queue its push (tier 3 by default, tier 2 for an admin edit)."""
    changed = {k for k, v in fields.items() if k in LISTING_FIELDS and getattr(listing, k) != v}
    for name in changed:
        setattr(listing, name, fields[name])
    if changed:
        names = {f"{n}_id" if n in ("channel", "product") else n for n in changed}
        listing.save(update_fields=sorted(names | {"updated_at"}))
        sync_work_enqueue(
            listing_ids=[listing.pk],
            priority=priority,
            reason="listing_settings",
            repush=bool(changed & {"channel_sku", "channel", "external_id"}),
        )
    return listing


def listing_delete(*, listing: Listing) -> None:
    try:
        with transaction.atomic():
            listing.delete()
    except ProtectedError as err:
        raise Conflict("The listing still has orders; deactivate it instead (is_active: false).") from err


@transaction.atomic
def listings_sync_now(*, listing_ids: Sequence[int]) -> int:
    """Staff asked: push these listings again (tier 2), even if the channel already shows the quantity."""
    return sync_work_enqueue(
        listing_ids=list(listing_ids), priority=Tier.MANUAL, reason="sync_now", repush=True
    ).listings


# A channel says it accepted orders up to now, not up to next year: a watermark further ahead than
# this would hold every raise for good (pending) or switch the hold off (imported).
WATERMARK_MAX_AHEAD = timedelta(minutes=5)


def watermark_limit() -> datetime:
    """The furthest instant a watermark may be moved to now."""
    return timezone.now() + WATERMARK_MAX_AHEAD


@transaction.atomic
def channel_watermark_set(
    *, channel: Channel, orders_pending_until: datetime | None = None, orders_imported_until: datetime | None = None
) -> Channel:
    """Move the order watermark forward; it never moves back (staff use ``channel_watermark_set_back``).

    ``orders_pending_until``: the channel accepted orders up to then (it says so, or an
    order notice arrived). ``orders_imported_until``: orders up to then are imported here.
    While pending is ahead of imported, pushes never raise a listing (docs/architecture.md, "Channel sync"). When the
    import catches up, the raises that were held back go out at tier 2. Neither moves beyond
    ``WATERMARK_MAX_AHEAD`` from now (the API refuses such a value; a clock ahead here is capped).
    """
    limit = watermark_limit()
    locked = channel_for_update(channel.pk)
    was_pending = locked.has_orders_pending
    if orders_pending_until:
        orders_pending_until = min(orders_pending_until, limit)
        if locked.orders_pending_until is None or orders_pending_until > locked.orders_pending_until:
            locked.orders_pending_until = orders_pending_until
    if orders_imported_until:
        orders_imported_until = min(orders_imported_until, limit)
        if locked.orders_imported_until is None or orders_imported_until > locked.orders_imported_until:
            locked.orders_imported_until = orders_imported_until
    locked.save(update_fields=["orders_pending_until", "orders_imported_until"])
    if was_pending and not locked.has_orders_pending:
        _held_raises_release(locked)
    return locked


@transaction.atomic
def channel_watermark_set_back(*, channel: Channel, to: datetime, actor: str) -> Channel:
    """Staff: move both watermark marks back to ``to`` at the latest (a channel moved one into the future).

    With pending at ``to`` and imported at or before it, raises are held until the order import has
    read past ``to`` again: the safe side. Logged with who did it and what the marks were.
    """
    locked = channel_for_update(channel.pk)
    before = (locked.orders_pending_until, locked.orders_imported_until)
    was_pending = locked.has_orders_pending
    if locked.orders_pending_until is not None and locked.orders_pending_until > to:
        locked.orders_pending_until = to
    if locked.orders_imported_until is not None and locked.orders_imported_until > to:
        locked.orders_imported_until = to
    locked.save(update_fields=["orders_pending_until", "orders_imported_until"])
    if was_pending and not locked.has_orders_pending:
        _held_raises_release(locked)
    log.warning(
        "channel_watermark_set_back",
        channel=locked.code,
        actor=actor,
        pending_before=before[0].isoformat() if before[0] else None,
        imported_before=before[1].isoformat() if before[1] else None,
        to=to.isoformat(),
    )
    return locked


def _held_raises_release(locked: Channel) -> None:
    held = SyncWork.objects.filter(
        channel=locked,
        state=SyncWork.State.PENDING,
        last_error__startswith="held",  # due or not: the import caught up, so they go now, not at the sweep
    )
    sync_work_for_update(held.values_list("listing_id", flat=True))
    released = held.update(next_attempt_at=timezone.now(), last_error="", priority=Least(F("priority"), Tier.MANUAL))
    if released:
        transaction.on_commit(partial(sync_dispatch, channels_by_priority={Tier.SALE: [locked.pk]}))
    log.info("channel_orders_imported", channel=locked.code, released=released)


def listings_platform_sold(*, units: Mapping[int, int]) -> None:
    """Platform orders just imported sold these units ({listing id: units}) on the platform itself.

    The platform lowered its own stock for them; the next push meets that as a compare mismatch
    which these units explain, so it needs no wait for the order poll (``push._mismatched``).
    """
    sold = {listing: qty for listing, qty in units.items() if qty > 0}
    if not sold:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE channels_listing AS l SET platform_sold_units = l.platform_sold_units + p.units
              FROM unnest(%s::bigint[], %s::int[]) AS p(listing_id, units)
             WHERE l.id = p.listing_id
            """,
            [list(sold), list(sold.values())],
        )
