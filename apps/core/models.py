"""API tokens and idempotency records: plumbing every app shares."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A token for a staff user or for one channel. Only its hash is stored."""

    name = models.CharField(max_length=120, blank=True, default="")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=8, editable=False, help_text="First characters, to tell tokens apart.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens"
    )
    channel = models.ForeignKey(
        "channels.Channel", null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API token"
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(channel__isnull=True))
                | (Q(user__isnull=True) & Q(channel__isnull=False)),
                name="token_belongs_to_user_or_channel",
            )
        ]

    def __str__(self) -> str:
        owner = f"channel {self.channel_id}" if self.channel_id else f"user {self.user_id}"
        return f"{self.prefix}… ({owner})"

    @staticmethod
    def new_key() -> str:
        return secrets.token_urlsafe(32)

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class IdempotencyRecord(models.Model):
    """The first answer to a mutating call, replayed for the same key and refused for another body."""

    scope = models.CharField(max_length=120, help_text="Who owns the key: a channel or a user.")
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="idempotency_unique_scope_key")]

    def __str__(self) -> str:
        return f"{self.scope}:{self.key}"
