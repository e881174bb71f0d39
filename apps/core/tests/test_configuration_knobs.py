"""Settings in one place: every environment variable the settings modules read is named in the configuration
table (docs/configuration.md), and no product module reads the environment itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
TABLE = ROOT / "docs" / "configuration.md"
SETTINGS_MODULES = sorted((ROOT / "inventory_site" / "settings").glob("*.py"))
# Read before Django starts (no settings yet): the launcher of the local stack and the image's health check.
PRE_DJANGO_MODULES = [ROOT / "inventory_site" / "stack.py", ROOT / "inventory_site" / "healthcheck.py"]
ENV_READERS = {"os.environ.get", "os.environ.setdefault", "os.getenv", "env.get", "env.setdefault"}


def _name(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def variables_read(path: Path) -> set[str]:
    """Names of the environment variables a module reads: env("X"), env.int("X", ...), os.environ.get("X"),
    os.environ["X"], and the same through a mapping called env."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        name = None
        if isinstance(node, ast.Call) and node.args:
            func = ast.unparse(node.func)
            if func == "env" or func.startswith("env.") or func in ENV_READERS:
                name = _name(node.args[0])
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in {"os.environ", "env"}:
            name = _name(node.slice)
        if name:
            found.add(name)
    return found


def table_names() -> set[str]:
    names = set()
    for line in TABLE.read_text().splitlines():
        match = re.match(r"\|\s*`([A-Z][A-Z0-9_]*)`\s*\|", line)
        if match:
            names.add(match.group(1))
    return names


def test_the_parser_finds_what_the_settings_read():
    base = variables_read(ROOT / "inventory_site" / "settings" / "base.py")
    assert {"SECRET_KEY", "DATABASE_URL", "SYNC_PROBE_S", "SYNC_SWEEP_EVERY_S", "LOW_STOCK_SCAN_SECONDS"} <= base
    assert "CACHE_KEY_PREFIX" in variables_read(ROOT / "inventory_site" / "settings" / "test.py")


def test_every_variable_the_settings_read_is_in_the_configuration_table():
    documented = table_names()
    for module in [*SETTINGS_MODULES, *PRE_DJANGO_MODULES]:
        missing = variables_read(module) - documented
        assert not missing, f"{module.relative_to(ROOT)} reads {sorted(missing)}, not in {TABLE.relative_to(ROOT)}"


def test_the_table_names_no_variable_nothing_reads():
    read = set().union(*(variables_read(module) for module in [*SETTINGS_MODULES, *PRE_DJANGO_MODULES]))
    # Read by processes other than Python ones (the Procfile, the compose file, Django's own bootstrap).
    elsewhere = {"DJANGO_SETTINGS_MODULE", "WEB_CONCURRENCY", "SITE_HOST"}
    assert table_names() - read - elsewhere == set()


def test_no_product_module_reads_the_environment():
    """Application code reads django.conf.settings; only the settings modules read the environment."""
    readers = []
    for path in sorted((ROOT / "apps").rglob("*.py")):
        if "tests" in path.parts or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            imported = set()
            if isinstance(node, ast.Import | ast.ImportFrom):
                imported = {alias.name for alias in node.names} | {getattr(node, "module", None) or ""}
            from_os = isinstance(node, ast.ImportFrom) and node.module == "os"
            if (
                (isinstance(node, ast.Attribute) and ast.unparse(node) in {"os.environ", "os.getenv", "os.environb"})
                or (from_os and {"environ", "getenv"} & imported)
                or "environ" in imported
            ):
                readers.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}")
    assert readers == [], f"read the environment outside the settings: {readers}"
