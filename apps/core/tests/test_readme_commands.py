"""Every shell command of README.md works as written: run here, or named below with the reason it is not.

The README's ```sh blocks run as bash scripts against this test's database with `make` pointed at the
interpreter running the tests (the checkout's `.venv` is not needed), from a scratch folder so
that files they write stay out of the checkout; `http://127.0.0.1:8000` is the live test server.
`make run` is started for real in its own test and asked for `/healthz`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
VENV = Path(sys.prefix) if sys.prefix != sys.base_prefix else None
# Commands of the README no test here runs, and why.
NOT_RUN = {
    "make test": "it runs the whole suite, this test included",
    "make test KIND=unit": "one kind of make test's suite, this test included",
    "make lint": "minutes of mypy over the whole code; run before every commit, not inside the suite",
    "make bench": "minutes of load at full CPU; it reports figures, it does not pass or fail",
    "docker compose up": "no Docker daemon on these machines; test_deploy_files.py checks the file with Compose",
    "LOG_LEVEL=DEBUG make run": "make run with more lines; test_logging.py checks what DEBUG adds",
    'make manage ARGS="..."': "the pattern of the commands run below, not a command",
}
# Started for real (with the demo off, as `STOCKROOM_DEMO_MODE=0 make run` asks) and asked for /healthz.
RUN_ELSEWHERE = {
    "make run": "test_make_run_starts_the_system_and_answers_healthz",
    "STOCKROOM_DEMO_MODE=0 make run": "test_make_run_starts_the_system_and_answers_healthz",
}
INLINE = re.compile(r"`((?:[A-Z_]+=\S+ )*(?:make|docker|python|curl) [^`]*)`")
# `make` as the README's reader calls it, but with this interpreter's venv (never installing into it).
MAKE = (
    'make() { command make --no-print-directory -f "$STOCKROOM_ROOT/Makefile" '
    'VENV="$STOCKROOM_VENV" -o "$STOCKROOM_VENV/.local" "$@"; }'
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(VENV is None, reason="make needs the tests to run from a venv"),
]


def readme_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)


def commands(block: str) -> list[str]:
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def shell_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    assert VENV is not None
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "STOCKROOM_VAR_DIR": str(tmp_path / "var"),
        "STOCKROOM_ROOT": str(ROOT),
        "STOCKROOM_VENV": str(VENV),
        "PYTHONPATH": str(ROOT),
        "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        **extra,
    }


def test_every_command_is_run_or_named_with_its_reason():
    seen = [command for block in readme_blocks() for command in commands(block)]
    assert "make run" in seen and "make test" in seen
    for command in seen:
        if command in NOT_RUN or command in RUN_ELSEWHERE:
            continue
        assert command.startswith(("make ", "export KEY=", "curl ")), f"a README command no test runs: {command}"
    # Commands in the text too: each is one of the blocks' commands or named above.
    for command in INLINE.findall(re.sub(r"```.*?```", "", README.read_text(), flags=re.S)):
        assert command in seen or command in NOT_RUN or command in RUN_ELSEWHERE, f"not run, no reason given: {command}"


@pytest.mark.slow
def test_the_working_commands_run_as_written(live_server, tmp_path):
    call_command("loaddata", "demo_catalog", verbosity=0)
    get_user_model().objects.create_superuser(username="admin", email="admin@localhost", password="x")
    (tmp_path / "manage.py").symlink_to(ROOT / "manage.py")
    blocks = [block for block in readme_blocks() if not set(commands(block)) & (set(NOT_RUN) | set(RUN_ELSEWHERE))]
    assert blocks, "the README shows how to work with a running system"
    for block in blocks:
        script = "\n".join([MAKE, "set -euo pipefail", block.replace("http://127.0.0.1:8000", live_server.url)])
        done = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path, env=shell_env(tmp_path), capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (block, done.stdout[-3000:], done.stderr[-3000:])
        if "/api/v1/whoami/" in block:
            assert '"kind":"staff"' in done.stdout.replace(" ", "") and '"name":"admin"' in done.stdout.replace(" ", "")
        if "export_catalog catalog/" in block:
            assert {"items.csv", "products.csv", "locations.csv", "listings.csv"} <= {
                p.name for p in (tmp_path / "catalog").iterdir()
            }
        if "import_catalog catalog/ --dry-run" in block:
            assert "problem" not in done.stdout.lower(), done.stdout[-2000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_make_run_starts_the_system_and_answers_healthz(tmp_path):
    """`make run` as written: bootstrap, then web, worker, sync, beat and demo under honcho; Ctrl-C ends it with 0."""
    port = _free_port()
    env = shell_env(tmp_path, STOCKROOM_PORT=str(port), STOCKROOM_DEMO_MODE="0", WEB_CONCURRENCY="1")
    process = subprocess.Popen(
        ["bash", "-c", f"{MAKE}\nmake run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    answer = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                if answer.status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # the terminal's Ctrl-C reaches the whole group
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
    assert answer is not None and answer.status_code == 200, output[-4000:]
    assert f"http://127.0.0.1:{port}/staff/" in output
    for name in ("web", "worker", "sync", "beat", "demo"):
        assert f"{name}.1 started" in output and f"{name}.1 stopped" in output, (name, output[-4000:])
    # Every process ended on the interrupt (make's own exit status at a terminal: test_run.py's pty test).
    assert "SIGINT received" in output, output[-4000:]
