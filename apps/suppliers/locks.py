"""The only place in this app that takes locks."""

from __future__ import annotations

from django.db import connection, transaction


def poll_interval_lock(*, every_s: int) -> None:
    """Serialise finding-or-creating the beat interval of this length for the rest of the transaction.

    The scheduler's interval table has no unique key, so two suppliers created at once with the
    same interval would otherwise each insert one.
    """
    assert transaction.get_connection().in_atomic_block, "poll_interval_lock needs a transaction"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", [f"poll-interval\x1f{every_s}"])
