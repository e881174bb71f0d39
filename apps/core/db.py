"""Prepared statements for the hot path.

Django sends every query with client-side binding, so PostgreSQL plans it anew each time; for
the few large statements an order runs (resolve, the one-statement reservation, the
idempotency claim) planning costs more than executing. ``prepared_cursor`` is a cursor on
Django's own connection and transaction that binds on the server, so psycopg prepares each
statement on its first use in a session and later calls skip the planner. It is wrapped like
any Django cursor: database errors arrive as ``django.db`` errors and tests count its queries.

``DATABASE_PREPARE_THRESHOLD`` (settings) is how many runs before psycopg prepares; ``none``
turns prepared statements off (for a transaction-pooling proxy without prepared-statement
support). ORM queries are never prepared: Django's client-side cursors cannot be.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import connection


def prepared_cursor() -> Any:
    """A Django cursor wrapper around a server-binding psycopg cursor; use it as a context manager."""
    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw: Any = psycopg.Cursor(connection.connection)  # the stubs type these as wrappers already
    # Wrapped as Django wraps its own cursors: error mapping, and query logging when it is on.
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)
