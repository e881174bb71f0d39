"""Helpers for tests that start other processes (workers, servers) on the test database."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode


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
