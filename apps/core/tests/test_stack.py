"""Where PostgreSQL and Redis come from: environment, local servers, or the embedded default."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import psycopg
import pytest
import redis

from inventory_site import stack


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_environment_urls_win(tmp_path):
    env = {"DATABASE_URL": "postgres://u@db.example:5432/x", "REDIS_URL": "redis://cache:6379/2"}
    assert stack.resolve_database(env, start=False, var_dir=tmp_path) == stack.Resolved(env["DATABASE_URL"], "env")
    assert stack.resolve_redis(env, start=False, var_dir=tmp_path) == stack.Resolved(env["REDIS_URL"], "env")


@pytest.mark.skipif(not stack.port_answers("127.0.0.1", 5432), reason="no local PostgreSQL on this machine")
def test_local_servers_when_they_answer(tmp_path):
    database = stack.resolve_database({}, start=False, var_dir=tmp_path)
    assert database is not None and database.source == "local"
    assert database.url.endswith(f"127.0.0.1:5432/{stack.DATABASE_NAME}")
    with psycopg.connect(database.url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (stack.DATABASE_NAME,)


def test_forced_embedded_without_running_server_resolves_nothing(tmp_path):
    """Settings never start servers: with nothing running they say so instead of guessing."""
    env = {"STOCKROOM_EMBEDDED": "1"}
    assert stack.resolve_database(env, start=False, var_dir=tmp_path) is None
    assert stack.resolve_redis(env, start=False, var_dir=tmp_path) is None


def test_broker_url_for_unix_socket():
    assert stack.broker_url_for("unix:///srv/var/redis/redis.sock?db=3") == (
        "redis+socket:///srv/var/redis/redis.sock?virtual_host=3"
    )
    assert stack.broker_url_for("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_closed_port_does_not_answer():
    assert not stack.port_answers("127.0.0.1", closed_port())


@pytest.mark.slow
def test_embedded_servers_start_answer_and_stop(tmp_path):
    """The embedded default is a real PostgreSQL and a real Redis under var/, started and stopped by us."""
    var_dir = tmp_path / "var"
    env = {"STOCKROOM_EMBEDDED": "1"}
    database = stack.resolve_database(env, start=True, var_dir=var_dir)
    cache = stack.resolve_redis(env, start=True, var_dir=var_dir)
    try:
        assert database is not None and database.source == "embedded"
        assert cache is not None and cache.source == "embedded"
        with psycopg.connect(database.url) as conn:
            version = conn.execute("SHOW server_version_num").fetchone()
            assert version is not None and int(version[0]) >= 160000
            conn.execute("CREATE TABLE probe (id int PRIMARY KEY)")
            conn.execute("SELECT id FROM probe FOR UPDATE")
        client = redis.Redis.from_url(cache.url)
        assert client.ping() and client.set("probe", "1") and client.get("probe") == b"1"
        # A second process finds the running servers instead of starting new ones.
        code = (
            "import sys; from pathlib import Path; from inventory_site import stack; var = Path(sys.argv[1]);"
            "print(stack.embedded_postgres_url(var), stack.embedded_redis_url(var))"
        )
        found = subprocess.run(
            [sys.executable, "-c", code, str(var_dir)], capture_output=True, text=True, check=True
        ).stdout.split()
        assert found == [database.url, cache.url]
    finally:
        stack.stop_embedded_redis(var_dir)
        stack.stop_embedded_postgres(var_dir)
    assert stack.embedded_postgres_url(var_dir) is None
    assert stack.embedded_redis_url(var_dir) is None


def settings_sources(env: dict[str, str]) -> list[str]:
    """Load the real settings module in a fresh process and report where it found each service."""
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='inventory_site.settings.test'; django.setup();"
        "from django.conf import settings as s;"
        "print(s.DATABASE_SOURCE, s.REDIS_SOURCE, s.DATABASES['default']['NAME'])"
    )
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "STOCKROOM_STACK"}}
    result = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


def test_settings_take_urls_from_the_environment():
    sources = settings_sources(
        {"DATABASE_URL": "postgres://someone@127.0.0.1:5432/elsewhere", "REDIS_URL": "redis://127.0.0.1:6379/9"}
    )
    assert sources == ["env", "env", "elsewhere"]


@pytest.mark.skipif(not stack.port_answers("127.0.0.1", 5432), reason="no local PostgreSQL on this machine")
def test_settings_find_local_servers():
    assert settings_sources({"STOCKROOM_EMBEDDED": ""})[:2] == ["local", "local"]


def test_settings_refuse_to_guess_without_any_database(tmp_path):
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='inventory_site.settings.test'; django.setup()"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "STOCKROOM_STACK"}}
    env.update({"STOCKROOM_EMBEDDED": "1", "STOCKROOM_VAR_DIR": str(tmp_path)})
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "No PostgreSQL" in result.stderr
