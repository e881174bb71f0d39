"""Plumbing the benchmarks share: a database of their own, Django set up on it, percentiles, output."""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "bench"


def base_database_url() -> str:
    sys.path.insert(0, str(ROOT))
    from inventory_site import stack

    resolved = stack.resolve_database(os.environ, start=False)
    if resolved is None:
        sys.exit("No PostgreSQL: set DATABASE_URL (or run through `make bench`).")
    return resolved.url


def with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def database_recreate(admin_url: str, name: str) -> str:
    """Drop and create the benchmark's own database; returns its URL."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(admin_url, name)


def bench_environment(database_url: str, **env: str) -> dict[str, str]:
    """The environment of a benchmark's Django, and of the servers it starts: production settings."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "inventory_site.settings.production",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key-not-for-production-use"),
        "LOG_LEVEL": "WARNING",
        "SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback, no TLS proxy in front
        **env,
    }


def django_setup(database_url: str, **env: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.update(bench_environment(database_url, **env))
    import django

    django.setup()


def percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def rows_write(name: str, rows: list[dict[str, Any]]) -> Path:
    """var/bench/<name>.json, the shape bench/run.py prints as one table."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({"rows": rows}, indent=1, default=str))
    return path
