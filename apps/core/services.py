"""Writes for tokens, and the database upkeep job."""

from __future__ import annotations

from typing import Any

import structlog
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from apps.core.authentication import remembered_tokens
from apps.core.errors import Forbidden, NotFound
from apps.core.models import ApiToken, hash_token

log = structlog.get_logger("stockroom.core")


def token_channel_model() -> Any:
    """The model a channel token belongs to, as the token's own foreign key names it (core sits below
    the apps that use it and imports none of them)."""
    return ApiToken._meta.get_field("channel").related_model


def token_owner_allowed(*, by: Any, owner: Any) -> bool:
    """Whether ``by`` may create or revoke tokens of the staff user ``owner``.

    A token carries its user's rights, so nobody hands out (or takes away) more than they hold:
    themself; a superuser only by a superuser; anyone else only when every permission of theirs is
    one ``by`` holds too. ``by=None`` is the operator on the server (a management command, the
    demo), who can read the database and the settings anyway.
    """
    if by is None or by.pk == owner.pk:
        return True
    if owner.is_superuser:
        return bool(by.is_superuser and by.is_active)
    if not by.is_active:
        return False
    if by.is_superuser:
        return True
    return owner.get_all_permissions() <= by.get_all_permissions()


def token_owners_allowed(*, by: Any) -> list[Any]:
    """The active staff users ``by`` may create tokens for, by username (the admin's choices)."""
    users = get_user_model().objects.filter(is_staff=True, is_active=True).order_by("username")
    return [user for user in users if token_owner_allowed(by=by, owner=user)]


def _refuse_unless_allowed(*, by: Any, owner: Any, verb: str) -> None:
    if not token_owner_allowed(by=by, owner=owner):
        raise Forbidden(
            f"You may not {verb} tokens of {owner.get_username()!r}: they hold rights you do not."
            if not owner.is_superuser
            else f"Only a superuser may {verb} tokens of the superuser {owner.get_username()!r}."
        )


@transaction.atomic
def token_create(
    *, staff_username: str | None = None, channel_code: str | None = None, name: str = "", by: Any = None
) -> str:
    """Create a token for a staff user or a channel and return the raw key (shown once, never stored).

    ``by`` is the user asking (the admin's, the command's ``--as``); a staff user's token is refused
    (Forbidden) when its owner holds rights ``by`` does not (``token_owner_allowed``). None is the
    operator on the server.
    """
    if (staff_username is None) == (channel_code is None):
        raise ValueError("A token belongs to exactly one staff user or one channel.")
    user = channel = None
    if staff_username is not None:
        user = get_user_model().objects.filter(username=staff_username).first()
        if user is None:
            raise NotFound(f"No user named {staff_username!r}.")
        if not user.is_staff:
            raise NotFound(f"User {staff_username!r} is not staff; only staff users get API tokens.")
        _refuse_unless_allowed(by=by, owner=user, verb="create")
    else:
        channel = token_channel_model().objects.filter(code=channel_code).first()
        if channel is None:
            raise NotFound(f"No channel with code {channel_code!r}.")
    raw = ApiToken.new_key()
    ApiToken.objects.create(key_hash=hash_token(raw), prefix=raw[:8], user=user, channel=channel, name=name)
    log.info("api_token_created", owner=staff_username or f"channel {channel_code}", by=_actor_name(by))
    return raw


def token_revoke(*, token: ApiToken, by: Any = None) -> None:
    """Revoke a token; refused (Forbidden) for a user's token whose owner holds rights ``by`` does not."""
    if token.user_id is not None:
        _refuse_unless_allowed(by=by, owner=token.user, verb="revoke")
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    remembered_tokens.forget()


def _actor_name(by: Any) -> str:
    return "operator" if by is None else str(by.get_username())


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
