"""`make run`'s web process is gunicorn with its static files, and Ctrl-C ends the runner with 0."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

BASE_DIR = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def procfile_command(name: str) -> str:
    for line in (BASE_DIR / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name}: line in the Procfile")


def run_env(port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        STOCKROOM_PORT=str(port),
        DJANGO_SETTINGS_MODULE="inventory_site.settings.local",
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
        WEB_CONCURRENCY="2",
    )
    return env


def wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> requests.Response:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the runner ended before it served"
        try:
            return requests.get(url, timeout=10)
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError(f"nothing answered at {url}")


def test_the_web_process_is_gunicorn():
    command = shlex.split(procfile_command("web"))
    assert command[0] == "gunicorn" and "runserver" not in command
    # ASGI with uvicorn workers: the availability stream holds no thread (docs/stream.md).
    assert "inventory_site.asgi:application" in command and "uvicorn_worker.UvicornWorker" in command
    assert "127.0.0.1:${STOCKROOM_PORT:-8000}" in procfile_command("web")


@pytest.mark.slow
def test_procfile_web_serves_pages_and_static_files_and_sigint_ends_the_runner_with_0():
    """The runner make run uses, with the Procfile's web line: pages and admin CSS through
    gunicorn on loopback; then SIGINT to the runner (as Ctrl-C would be) and it ends with 0."""
    port = free_port()
    runner = subprocess.Popen(
        [sys.executable, "-m", "inventory_site.stack", "exec", "--", "honcho", "start", "web"],
        cwd=BASE_DIR,
        env=run_env(port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        login = wait_for(f"{base}/admin/login/", runner)
        assert login.status_code == 200 and "uvicorn" in login.headers.get("Server", "").lower()
        # The availability stream on the same address and port (refused here: no token).
        stream = requests.get(f"{base}/api/v1/availability/stream/", timeout=10)
        assert stream.status_code == 401 and stream.json()["code"] == "not_authenticated"
        css = requests.get(f"{base}/static/admin/css/base.css", timeout=10)
        assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
        staff_css = requests.get(f"{base}/static/stockroom.css", timeout=10)
        assert staff_css.status_code == 200 and len(staff_css.content) > 100
        assert "/static/stockroom.css" in requests.get(f"{base}/staff/login/", timeout=10).text

        runner.send_signal(signal.SIGINT)
        output = runner.communicate(timeout=60)[0].decode()
        assert runner.returncode == 0, output
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{base}/admin/login/", timeout=2)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()


@pytest.mark.slow
def test_sigint_to_runner_and_command_together_ends_with_0(tmp_path):
    """A terminal's Ctrl-C reaches the runner and its command's process group at once."""
    procfile = tmp_path / "Procfile"
    sleeper = "import time; print('up', flush=True); time.sleep(60)"
    procfile.write_text(f'sleeper: {sys.executable} -c "{sleeper}"\n')
    runner = subprocess.Popen(
        [sys.executable, "-m", "inventory_site.stack", "exec", "--", "honcho", "start", "-f", str(procfile)],
        cwd=BASE_DIR,
        env=run_env(free_port()),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert runner.stdout is not None
    try:
        deadline = time.monotonic() + 30
        seen = b""
        while b"up" not in seen and time.monotonic() < deadline:
            seen += runner.stdout.readline()
        assert b"up" in seen, seen
        (honcho,) = psutil.Process(runner.pid).children()
        os.killpg(runner.pid, signal.SIGINT)
        os.killpg(os.getpgid(honcho.pid), signal.SIGINT)
        output = runner.communicate(timeout=30)[0].decode()
        assert runner.returncode == 0, seen.decode() + output
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()


@pytest.mark.slow
def test_ctrl_c_at_a_terminal_ends_make_with_0(tmp_path):
    """`make` runs the runner as `make run` does; Ctrl-C typed at its terminal (a pty here)
    stops the command, and make ends with 0 without reporting an error or an interrupt."""
    procfile = tmp_path / "Procfile"
    sleeper = "import time; print('up', flush=True); time.sleep(60)"
    procfile.write_text(f'sleeper: {sys.executable} -c "{sleeper}"\n')
    (tmp_path / "Makefile").write_text(
        f"run:\n\t@cd {BASE_DIR} && {sys.executable} -m inventory_site.stack exec -- honcho start -f {procfile}\n"
    )
    pid, terminal = pty.fork()
    if pid == 0:  # the child: make, with Ctrl-C's default meaning, on the new terminal
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.chdir(tmp_path)
        os.execvpe("make", ["make", "--no-print-directory", "run"], run_env(free_port()))
    output = b""

    def read_for(seconds: float, until: bytes | None = None) -> None:
        nonlocal output
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until in output):
            ready, _, _ = select.select([terminal], [], [], 0.2)
            if ready:
                try:
                    output += os.read(terminal, 65536)
                except OSError:  # the terminal closed: everything has ended
                    return

    try:
        read_for(30, until=b"up")
        assert b"up" in output, output
        os.write(terminal, b"\x03")  # Ctrl-C
        read_for(30)
        _, status = os.waitpid(pid, 0)
        text = output.decode(errors="replace")
        assert os.waitstatus_to_exitcode(status) == 0, text
        assert "Error" not in text and "Interrupt" not in text and "SIGINT received" in text
    finally:
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        os.close(terminal)
