"""Sales channels, their listings, and the sync work that keeps listings true."""

from __future__ import annotations

import hashlib
from typing import ClassVar

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from apps.catalog.models import Location, Product
from apps.catalog.signals import Tier
from apps.channels.connectors import CONNECTOR_CHOICES
from apps.core.secrets import EncryptedTextField, FernetTokenField


class Channel(models.Model):
    class Kind(models.TextChoices):
        WEBSHOP = "webshop", "Own webshop"
        MARKETPLACE = "marketplace", "Marketplace"
        DELIVERY = "delivery", "Delivery app"
        POS = "pos", "Point of sale"

    class State(models.TextChoices):
        SETUP = "setup", "Setting up (nothing pushed)"
        LIVE = "live", "Live"
        PAUSED = "paused", "Paused (nothing pushed)"

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.WEBSHOP)
    # How the channel's platform is spoken to (``apps.channels.connectors``): ``stockroom`` is our own
    # push protocol (push_url + secret); a platform connector reads ``settings`` and the credentials.
    connector = models.CharField(max_length=30, choices=CONNECTOR_CHOICES, default="stockroom")
    # The connector's settings (shop URL, location...), validated by its settings serializer. Nothing secret.
    settings = models.JSONField(default=dict, blank=True)
    # The platform account whose orders the channel imports (``Connector.account``: a shop, a store, a seller in
    # a marketplace); one channel per account, or every order would be imported twice.
    platform_account = models.CharField(max_length=300, blank=True, default="", editable=False)
    # The connector's credentials as one Fernet token (``apps.core.secrets``); write-only everywhere.
    credentials_encrypted = FernetTokenField(blank=True, default="", editable=False)
    push_url = models.URLField(max_length=500, blank=True, default="")
    # Signs pushes (HMAC-SHA256). Encrypted at rest; write-only through the API, never shown.
    # Used through ``apps.core.secrets.secret_value`` (an unreadable one is refused there).
    secret = EncryptedTextField(blank=True, default="")
    # The channel's request budget; empty: the connector's own (``Connector.default_rate_per_s``/``default_burst``,
    # read through ``rate_limit``).
    rate_per_s = models.FloatField(
        null=True,
        blank=True,
        help_text="Most requests per second to the platform. Empty: the connector's own default for its platform.",
    )
    burst = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Requests that may go out at once before the per-second rate applies. Empty: the connector's "
        "default.",
    )
    batch_size = models.PositiveIntegerField(default=100)
    coefficient = models.DecimalField(max_digits=4, decimal_places=3, default=1)
    buffer = models.PositiveIntegerField(default=0)
    locations = models.ManyToManyField(Location, through="ChannelLocation", related_name="channels")
    is_active = models.BooleanField(default=True)
    # Whether quantities are sent to the platform (``channel_state_set``, ``channel_go_live``): a channel on a
    # platform connector starts in ``setup`` and nothing is pushed until the merchant goes live; ``paused``
    # stops pushing during a platform incident. Orders come in whatever the state.
    state = models.CharField(max_length=10, choices=State.choices, default=State.LIVE)
    # Import mode (an order the channel already sold, never refused) can oversell and so zero every
    # channel of the item: only channels that cannot refuse a sale may use it
    # (docs/architecture.md, "Limits and edges").
    can_import = models.BooleanField(
        null=True,
        blank=True,
        default=None,
        help_text="May send orders in import mode. Empty: by kind (marketplace and delivery yes, webshop and "
        "point of sale no); a platform connector's channel (Shopify, WooCommerce, Amazon) imports its orders.",
    )
    import_cap_units = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Most units one imported order line may carry; beyond it the order is refused (422) and an "
        "incident opens. Empty: the larger of 100 and 10x what the line's product has available then.",
    )
    # The order watermark (docs/architecture.md, "Channel sync": never raise a quantity while orders are not imported).
    # The channel reports "I accepted orders up to T" (orders_pending_until); the importer reports
    # "orders are imported up to T" (orders_imported_until). While pending > imported, pushes may
    # lower a listing but never raise it above what the channel was last told.
    orders_pending_until = models.DateTimeField(null=True, blank=True)
    orders_imported_until = models.DateTimeField(null=True, blank=True)
    last_push_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(coefficient__gte=0) & Q(coefficient__lte=1), name="channel_coefficient_0_1"
            ),
            models.CheckConstraint(
                condition=Q(rate_per_s__isnull=True) | Q(rate_per_s__gt=0), name="channel_rate_positive"
            ),
            models.CheckConstraint(condition=Q(state__in=["setup", "live", "paused"]), name="channel_state_valid"),
            models.UniqueConstraint(
                fields=["connector", "platform_account"],
                condition=~Q(platform_account=""),
                name="channel_one_per_platform_account",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    @property
    def imports_allowed(self) -> bool:
        """Whether this channel may import orders: its own setting, or else its kind's or connector's default.

        A platform's orders are sold before Stockroom hears of them (they cannot be refused), so a
        channel on a platform connector imports by default whatever its kind.
        """
        if self.can_import is not None:
            return self.can_import
        return self.kind in IMPORT_KINDS or self.connector != STOCKROOM_CONNECTOR

    @property
    def pushes(self) -> bool:
        """Whether quantities go to the platform now: an active channel in state ``live``."""
        return self.is_active and self.state == Channel.State.LIVE

    @property
    def rate_limit(self) -> tuple[float, int]:
        """The effective request budget (rate per second, burst): the channel's own where set, else its
        connector's defaults (``Connector.default_rate_per_s``/``default_burst``)."""
        rate, burst = self.rate_per_s, self.burst
        if rate is None or burst is None:
            from apps.channels.connectors import connector_named

            try:
                platform = connector_named(self.connector)
                default_rate, default_burst = platform.default_rate_per_s, platform.default_burst
            except (LookupError, ImportError):
                default_rate, default_burst = 5.0, 10
            rate = default_rate if rate is None else rate
            burst = default_burst if burst is None else burst
        return float(rate), int(burst)

    @property
    def has_orders_pending(self) -> bool:
        """True while the channel holds orders that are not imported yet (raises are held back)."""
        if self.orders_pending_until is None:
            return False
        return self.orders_imported_until is None or self.orders_imported_until < self.orders_pending_until

    @property
    def shard(self) -> int:
        """A stable shard number, so one channel always lands on the same sync queue."""
        from django.conf import settings

        digest = hashlib.sha256(self.code.encode()).digest()
        return int.from_bytes(digest[:4], "big") % settings.STOCKROOM["SYNC_SHARDS"]


# Kinds that sell on their own display and tell us afterwards: they import by default.
IMPORT_KINDS = (Channel.Kind.MARKETPLACE, Channel.Kind.DELIVERY)
STOCKROOM_CONNECTOR = "stockroom"


class ChannelLocation(models.Model):
    """The locations whose stock a channel may sell, in the order orders take from them."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="channel_locations")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="channel_locations")
    priority = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["channel", "priority", "location"]
        constraints = [models.UniqueConstraint(fields=["channel", "location"], name="channel_location_unique")]

    def __str__(self) -> str:
        return f"{self.channel.code} sells from {self.location.code} (priority {self.priority})"


class ChannelWebhook(models.Model):
    """An order webhook the platform calls for this channel, as go-live subscribed it (``channel_go_live``).

    Kept so the admin can show what the platform will call and whether it is active; the platform's
    own list (``Connector.webhook_subscriptions``) is the truth, this is the last look at it.
    """

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="webhooks")
    platform_id = models.CharField(max_length=200, help_text="The platform's id of the subscription.")
    topic = models.CharField(max_length=100)
    address = models.URLField(max_length=500)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["channel", "topic", "platform_id"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "platform_id"], name="channelwebhook_unique_platform_id")
        ]

    def __str__(self) -> str:
        return f"{self.topic} -> {self.address} ({self.channel.code})"


class CatalogRead(models.Model):
    """One read of a platform's whole catalog for a channel, in the background (``services.discover``).

    Its progress (variants read, of how many; requests; errors) is shown while it runs; once ``done`` its
    variants (``entries``) serve the link, opening-stock and go-live previews of the channel while fresh.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Reading"
        DONE = "done", "Read"
        FAILED = "failed", "Failed"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="catalog_reads")
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    done = models.PositiveIntegerField(default=0, help_text="Variants read so far.")
    total = models.PositiveIntegerField(null=True, blank=True, help_text="Variants the platform has, when known.")
    requests = models.PositiveIntegerField(default=0, help_text="Requests the read sent to the platform.")
    errors = models.PositiveIntegerField(default=0, help_text="Failed attempts.")
    error = models.CharField(max_length=300, blank=True, help_text="Why the last attempt failed (short).")
    # Once done: each variant as [sku, external_id, title, tracked, platform_managed, {location: quantity}].
    entries = models.JSONField(null=True, blank=True)
    requested_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["channel", "-created_at"], name="catalogread_channel_recent")]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["queued", "running", "done", "failed"]), name="catalogread_state_valid"
            ),
            models.CheckConstraint(
                condition=~Q(state="done") | Q(entries__isnull=False), name="catalogread_done_has_entries"
            ),
        ]

    def __str__(self) -> str:
        return f"catalog read {self.pk} of {self.channel_id}: {self.state}"


class Listing(models.Model):
    """One channel SKU selling one product, with optional overrides of the channel defaults."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="listings")
    channel_sku = models.CharField(max_length=100)
    # The platform's own id of what is sold (a Shopify inventory item GID, a WooCommerce product or
    # variation id, an Amazon seller SKU); empty where the connector needs none.
    external_id = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="The platform's id of what is sold: Shopify inventory item GID, WooCommerce product or "
        "variation id, Amazon seller SKU. Empty for the Stockroom push protocol.",
    )
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="listings")
    coefficient = models.DecimalField(max_digits=4, decimal_places=3, null=True, blank=True)
    buffer = models.PositiveIntegerField(null=True, blank=True)
    max_qty = models.PositiveIntegerField(null=True, blank=True)
    end_when = models.PositiveIntegerField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    last_pushed_qty = models.IntegerField(null=True, blank=True)
    last_pushed_at = models.DateTimeField(null=True, blank=True)
    # On a platform with several locations (``settings.location_map``): what each platform location was last
    # told ({location id: quantity}), each its own compare-and-set value; ``last_pushed_qty`` is their sum.
    pushed_places = models.JSONField(default=dict, blank=True, db_default={})
    # The channel was last told 0 because of an open incident, not because of its stock: once the
    # incident's cause is gone, any stock change of its items pushes the truth again.
    zeroed_by_incident = models.BooleanField(default=False)
    # Units of platform orders imported that the platform's own stock drops have not yet met: a platform
    # lowers its stock when it sells, so a compare mismatch of up to this many units is already in our
    # books. Negative: drops met before their orders were imported (those imports fill the hole first).
    platform_sold_units = models.IntegerField(
        default=0, help_text="Units of imported platform orders the platform's own stock drops have not met yet."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # When the listing's own settings last changed (not its quantity): `updated_since` of the channel's list.
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        ordering = ["channel", "channel_sku"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "channel_sku"], name="listing_unique_channel_sku"),
            # One listing per platform item: two would push over each other (and order lines found by it).
            models.UniqueConstraint(
                fields=["channel", "external_id"],
                condition=~Q(external_id=""),
                name="listing_unique_channel_external_id",
                violation_error_message="This channel already has a listing with this external_id.",
            ),
            models.CheckConstraint(
                condition=Q(coefficient__isnull=True) | (Q(coefficient__gte=0) & Q(coefficient__lte=1)),
                name="listing_coefficient_0_1",
            ),
        ]
        indexes = [
            models.Index(fields=["product"], name="listing_product"),
            # The few listings an incident holds at 0: any move of their items looks them up.
            models.Index(fields=["product"], name="listing_zeroed_product", condition=Q(zeroed_by_incident=True)),
        ]

    def __str__(self) -> str:
        return f"{self.channel_sku} on {self.channel.code}"


class SyncWork(models.Model):
    """One pending push for one listing: the queue of channel sync, kept as rows.

    Any change that can move a listing's quantity upserts this row in its own transaction
    (coalescing: the most urgent priority wins, the earliest enqueue time is kept, and
    ``version`` counts the changes). A pusher deletes the row only if ``version`` is still
    the one it read, so a change that lands during a push is pushed again, and a worker
    that dies mid-push leaves the row for the next one.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DEAD = "dead", "Dead letter"

    listing = models.OneToOneField(Listing, on_delete=models.CASCADE, related_name="sync_work")
    # Denormalised from the listing so that per-channel scans need no join.
    # Indexed by syncwork_channel_due, which leads with it.
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="sync_work", db_index=False)
    priority = models.PositiveSmallIntegerField(choices=Tier.choices)
    reason = models.CharField(max_length=60, blank=True, default="")
    enqueued_at = models.DateTimeField(help_text="Earliest change not pushed yet (latency is measured from here).")
    changed_at = models.DateTimeField(help_text="Latest change.")
    version = models.PositiveIntegerField(default=1)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    # Push even when the channel was already told this quantity (sync now, reconciliation, retry).
    repush = models.BooleanField(default=False)
    last_error = models.CharField(max_length=500, blank=True, default="")
    # The last failure was the platform's as a whole (the whole batch failed: down, refusing us), not
    # this listing's: such work is retried as soon as the channel's pushes succeed again.
    channel_failure = models.BooleanField(default=False)

    class Meta:
        ordering = ["priority", "enqueued_at"]
        verbose_name = "sync work"
        verbose_name_plural = "sync work"
        constraints = [
            models.CheckConstraint(condition=Q(priority__gte=1) & Q(priority__lte=3), name="syncwork_priority_1_3"),
            models.CheckConstraint(condition=Q(state__in=["pending", "dead"]), name="syncwork_state_valid"),
        ]
        indexes = [
            models.Index(fields=["channel", "state", "priority", "enqueued_at"], name="syncwork_channel_due"),
            models.Index(fields=["state", "next_attempt_at"], name="syncwork_state_next"),
        ]

    def __str__(self) -> str:
        return f"push of {self.listing} (tier {self.priority}, {self.get_state_display().lower()})"


class DeadLetterManager(models.Manager["DeadLetter"]):
    def get_queryset(self) -> models.QuerySet[DeadLetter]:
        return super().get_queryset().filter(state=SyncWork.State.DEAD)


class DeadLetter(SyncWork):
    """Sync work that failed its last allowed attempt; staff retry it from the admin.

    It does not stay dead for good: a new change to the listing pushes it again, and work that died
    with its whole channel (the platform was down) is retried once the channel's pushes succeed again.
    ``DeadLetterRecord`` keeps what died and why after that.
    """

    objects: ClassVar[DeadLetterManager] = DeadLetterManager()

    class Meta:
        proxy = True
        verbose_name = "dead letter"
        verbose_name_plural = "dead letters"


class DeadLetterRecord(models.Model):
    """What died and why, kept after the work heals (a new change, the channel recovered, staff retried)."""

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="dead_letter_records")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="dead_letter_records")
    died_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField()
    error = models.CharField(max_length=500, blank=True, default="")
    channel_failure = models.BooleanField(
        default=False, help_text="The whole channel was failing, not only this listing."
    )
    healed_at = models.DateTimeField(null=True, blank=True, help_text="When the listing was pushed again successfully.")

    class Meta:
        ordering = ["-died_at"]
        verbose_name = "dead letter record"
        constraints = [
            # One open record per listing: dying again before a successful push adds nothing new.
            models.UniqueConstraint(
                fields=["listing"], condition=Q(healed_at__isnull=True), name="deadletterrecord_one_open"
            ),
        ]
        indexes = [models.Index(fields=["channel", "-died_at"], name="deadletterrecord_channel")]

    def __str__(self) -> str:
        return f"{self.listing} died {self.died_at:%Y-%m-%d %H:%M}"
