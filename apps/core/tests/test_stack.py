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


# Run in a fresh process with every way out to the network refused: a Python socket connecting
# (redis-py, the old server probes) or psycopg opening a connection (libpq has its own sockets).
NO_NETWORK = """
import socket, psycopg
def refused(*args, **kwargs):
    raise SystemExit("settings touched the network: " + repr(args[1:] or args)[:200])
socket.socket.connect = socket.socket.connect_ex = refused
socket.create_connection = refused
psycopg.connect = psycopg.Connection.connect = refused
"""


def settings_without_servers(env: dict[str, str], module: str = "inventory_site.settings.test") -> list[str]:
    code = NO_NETWORK + (
        f"import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = {module!r}; django.setup()\n"
        "from django.conf import settings as s\n"
        "db = s.DATABASES['default']\n"
        "print(s.DATABASE_SOURCE, s.REDIS_SOURCE, db['HOST'], db['PORT'], db['NAME'], s.REDIS_URL)"
    )
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "STOCKROOM_STACK"}}
    result = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:] + result.stdout[-2000:]
    return result.stdout.split()


@pytest.mark.parametrize("module", ["inventory_site.settings.test", "inventory_site.settings.local"])
def test_importing_settings_opens_no_connection_and_assumes_the_local_default(tmp_path, module):
    """Linters, type checkers and tools load settings with no server anywhere: nothing is probed or created."""
    # Not even the local servers of this machine are asked (STOCKROOM_EMBEDDED unset).
    sources = settings_without_servers({"STOCKROOM_EMBEDDED": "", "STOCKROOM_VAR_DIR": str(tmp_path)}, module)
    assert sources == ["default", "default", "127.0.0.1", "5432", "stockroom", "redis://127.0.0.1:6379/0"]


def test_settings_read_what_the_stack_command_found():
    sources = settings_without_servers(
        {
            "DATABASE_URL": "postgresql://postgres@/stockroom?host=/srv/var/postgres",
            "REDIS_URL": "unix:///srv/var/redis/redis.sock?db=0",
            "STOCKROOM_STACK": "database=embedded,redis=embedded",
        }
    )
    assert sources[:2] == ["embedded", "embedded"]
    assert sources[-2:] == ["stockroom", "unix:///srv/var/redis/redis.sock?db=0"]


def test_the_stack_command_passes_the_servers_it_found_to_its_command(tmp_path):
    """What `make test` and `make run` rely on: settings see the stack's URLs, whatever they are."""
    code = "from django.conf import settings as s; print(s.DATABASE_URL == __import__('os').environ['DATABASE_URL'])"
    env = {k: v for k, v in os.environ.items() if k not in {"STOCKROOM_STACK"}}
    env["DJANGO_SETTINGS_MODULE"] = "inventory_site.settings.test"
    result = subprocess.run(
        [sys.executable, "-m", "inventory_site.stack", "exec", "--", sys.executable, "-c", code],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "True"


@pytest.mark.slow
def test_settings_take_urls_from_the_environment():
    sources = settings_without_servers(
        {"DATABASE_URL": "postgres://someone@127.0.0.1:5432/elsewhere", "REDIS_URL": "redis://127.0.0.1:6379/9"}
    )
    assert sources == ["env", "env", "127.0.0.1", "5432", "elsewhere", "redis://127.0.0.1:6379/9"]


@pytest.mark.slow
def test_production_settings_leave_the_sandbox_out_and_other_settings_keep_it():
    code = NO_NETWORK + (
        "import django, os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = sys.argv[1]; django.setup()\n"
        "from django.apps import apps\n"
        "print(apps.is_installed('sandbox'), apps.is_installed('sandbox.demo'), apps.is_installed('apps.staff'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "STOCKROOM_STACK"}}
    env["SECRET_KEY"] = "x" * 50
    found = {}
    for module in ("production", "local", "test"):
        result = subprocess.run(
            [sys.executable, "-c", code, f"inventory_site.settings.{module}"], env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-2000:]
        found[module] = result.stdout.split()
    assert found == {
        "production": ["False", "False", "True"],
        "local": ["True", "True", "True"],
        "test": ["True", "True", "True"],
    }
