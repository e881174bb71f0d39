"""Writes for tokens, and the database upkeep job."""

from __future__ import annotations

from typing import Any

import structlog
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from apps.core.authentication import remembered_tokens
from apps.core.errors import NotFound
from apps.core.models import ApiToken, hash_token

log = structlog.get_logger("stockroom.core")


def token_channel_model() -> Any:
    """The model a channel token belongs to, as the token's own foreign key names it (core sits below
    the apps that use it and imports none of them)."""
    return ApiToken._meta.get_field("channel").related_model


@transaction.atomic
def token_create(*, staff_username: str | None = None, channel_code: str | None = None, name: str = "") -> str:
    """Create a token for a staff user or a channel and return the raw key (shown once, never stored)."""
    if (staff_username is None) == (channel_code is None):
        raise ValueError("A token belongs to exactly one staff user or one channel.")
    user = channel = None
    if staff_username is not None:
        user = get_user_model().objects.filter(username=staff_username).first()
        if user is None:
            raise NotFound(f"No user named {staff_username!r}.")
        if not user.is_staff:
            raise NotFound(f"User {staff_username!r} is not staff; only staff users get API tokens.")
    else:
        channel = token_channel_model().objects.filter(code=channel_code).first()
        if channel is None:
            raise NotFound(f"No channel with code {channel_code!r}.")
    raw = ApiToken.new_key()
    ApiToken.objects.create(key_hash=hash_token(raw), prefix=raw[:8], user=user, channel=channel, name=name)
    return raw


def token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    remembered_tokens.forget()


def planner_statistics_refresh(*, force: bool = False) -> bool:
    """ANALYZE the database when the server's autovacuum is off (or when forced); True if it ran.

    Without fresh statistics PostgreSQL plans an order's reservation lookup as a scan of the
    whole table, so every order gets slower as the ledger grows. Autovacuum keeps them fresh;
    this job stands in where a server runs without it. ANALYZE reads a fixed-size sample of
    each table, so its cost does not grow with the ledger.
    """
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0] == "on"
        if autovacuum and not force:
            return False
        cursor.execute("ANALYZE")
    log.info("planner_statistics_refreshed", autovacuum=autovacuum)
    return True
