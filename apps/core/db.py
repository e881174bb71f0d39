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

psycopg turns ``%(name)s`` placeholders into PostgreSQL's ``$n`` on every call for a statement
over 4 kB (it caches the conversion of shorter ones only); for the one-statement reservation
that cost a third of a millisecond of Python per order. A ``Statement`` is converted once, at
import, and runs on a raw cursor (``prepared_cursor(raw=True)``), which sends the text as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import connection

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%|%s")


@dataclass(frozen=True)
class Statement:
    """A fixed SQL text written with ``%(name)s`` parameters, in PostgreSQL's ``$n`` form."""

    text: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, sql: str) -> Statement:
        names: list[str] = []

        def place(match: re.Match[str]) -> str:
            if match.group(0) == "%%":
                return "%"
            name = match.group(1)
            if name is None:
                raise ValueError("a Statement takes named parameters only: %(name)s, not %s")
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        return cls(_PLACEHOLDER.sub(place, sql), tuple(names))

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        """The values in the order of their ``$n``; a missing one is a KeyError, an extra one is ignored."""
        return [params[name] for name in self.names]


def prepared_cursor(*, raw: bool = False) -> Any:
    """A Django cursor wrapper around a server-binding psycopg cursor; use it as a context manager.

    With ``raw``, the cursor takes ``$n`` texts (a ``Statement``) and positional values.
    """
    connection.ensure_connection()
    connection.validate_thread_sharing()
    # the stubs type these as wrappers already
    cursor: Any = (psycopg.RawCursor if raw else psycopg.Cursor)(connection.connection)
    # Wrapped as Django wraps its own cursors: error mapping, and query logging when it is on.
    return connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)
