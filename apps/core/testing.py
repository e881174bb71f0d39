"""Helpers for tests that start other processes (workers, servers) or threads on the test database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from django.db import connections


def connect_kwargs(settings_dict: dict[str, Any]) -> dict[str, Any]:
    """psycopg.connect() arguments for this connection's database, TCP or unix socket."""
    options = settings_dict.get("OPTIONS") or {}
    return {
        "host": settings_dict.get("HOST") or options.get("host") or "127.0.0.1",
        "port": settings_dict.get("PORT") or options.get("port") or 5432,
        "user": settings_dict.get("USER") or "postgres",
        "password": settings_dict.get("PASSWORD") or None,
        "dbname": settings_dict["NAME"],
    }


def database_url(settings_dict: dict[str, Any], **params: str) -> str:
    """A URL for this connection's database, TCP or a unix-socket directory (the embedded default)."""
    user = quote(settings_dict.get("USER") or "")
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{quote(password)}" if password else user
    options = settings_dict.get("OPTIONS") or {}
    host = str(settings_dict.get("HOST") or options.get("host") or "127.0.0.1")
    port = str(settings_dict.get("PORT") or options.get("port") or 5432)
    name = quote(settings_dict["NAME"])
    if host.startswith("/"):
        query = urlencode({"host": host, "port": port, **params})
        return f"postgresql://{auth}@/{name}?{query}"
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{auth}@{host}:{port}/{name}{query}"


def run_all(target: Callable[[int], object], count: int) -> list[BaseException]:
    """Call target(0..count-1) in threads released together, each on its own database connection.

    Returns the errors raised; fails if a thread is still running after two minutes (a deadlock).
    """
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def worker(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            target(n)
        except BaseException as err:  # collected for the caller to assert on
            errors.append(err)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a worker hung: deadlock or lock timeout"
    return errors
