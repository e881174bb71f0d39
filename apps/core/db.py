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
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
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


def int_array(values: Iterable[int]) -> str:
    """An array of integers as the text of an array parameter (``'{1,2,3}'``), for ``%(name)s::bigint[]``.

    psycopg sends a str as it is (PostgreSQL reads it as the type the statement casts it to), where a
    list costs a search for its element type and dumper on every call: about 7 µs an array, a tenth of
    a millisecond for the one-statement reservation and its thirteen arrays.
    """
    return "{" + ",".join(str(int(value)) for value in values) + "}"


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


# --- The statement timeout of web requests -------------------------------------------------------
# A web request's statements (lock waits included) are bounded by DATABASE_WEB_STATEMENT_TIMEOUT_MS, its
# lock waits by DATABASE_WEB_LOCK_TIMEOUT_MS (a lock held by a session that was cut off stops only the
# requests that need it, for that long, not every web thread); workers' are not (an import or a sweep
# may rightly run for minutes). A process serves requests on threads of its own, so the bounds are
# session settings, applied once per physical connection used by a request: by the middleware when the
# request finds its thread's connection open, else when the request opens it (``connection_created``).
# No extra round trip on later requests.
_web_timeout_ms: ContextVar[tuple[int, int] | None] = ContextVar("web_statement_timeout_ms", default=None)
_applied: weakref.WeakKeyDictionary[Any, tuple[int, int]] = weakref.WeakKeyDictionary()


def _bounds_apply(cursor: Any, bounds: tuple[int, int]) -> None:
    cursor.execute(f"SET statement_timeout = {int(bounds[0])}")
    cursor.execute(f"SET lock_timeout = {int(bounds[1])}")


def _statement_timeout_set(raw: Any, bounds: tuple[int, int]) -> None:
    if _applied.get(raw) == bounds:
        return
    with raw.cursor() as cursor:
        _bounds_apply(cursor, bounds)
    _applied[raw] = bounds


@contextmanager
def web_statement_timeout(ms: int, *, lock_ms: int = 0) -> Iterator[None]:
    """For the block (a web request): this thread's database sessions bound each statement to ``ms`` and
    each lock wait to ``lock_ms`` (0: no bound of its own)."""
    bounds = (ms, lock_ms) if ms or lock_ms else None
    token = _web_timeout_ms.set(bounds)
    try:
        try:
            if bounds and connection.connection is not None and not connection.in_atomic_block:
                _statement_timeout_set(connection.connection, bounds)
            elif bounds and connection.connection is not None:  # a test's transaction: applied, not remembered
                with connection.connection.cursor() as cursor:
                    _bounds_apply(cursor, bounds)
        except psycopg.Error:
            # A broken session: the request's first query finds out and answers 503 as usual.
            pass
        yield
    finally:
        _web_timeout_ms.reset(token)


def on_connection_created(sender: object, *, connection: Any, **_: object) -> None:
    """A connection opened during a web request gets the request's statement and lock timeouts."""
    bounds = _web_timeout_ms.get()
    if bounds and connection.vendor == "postgresql":
        _statement_timeout_set(connection.connection, bounds)


def statement_timed_out(exc: BaseException) -> bool:
    """Whether this database error is a statement cancelled by ``statement_timeout`` or ``lock_timeout``."""
    cause = exc.__cause__ or exc
    return isinstance(cause, (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable))
