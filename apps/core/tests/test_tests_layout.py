"""Tests are laid out by kind (docs/architecture.md, "Tests"): each app's own tests beside it, the cross-app
end-to-end flows in tests/e2e/, the browser tests in tests/browser/; `make test KIND=...` runs one kind by its
folders, so a test in the wrong folder would run with the wrong kind."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
FOLDERS = ("apps", "sandbox", "inventory_site", "tests")
BROWSER = re.compile(r"\bpytest\.mark\.browser\b")


def modules() -> list[Path]:
    return sorted(path for folder in FOLDERS for path in (ROOT / folder).rglob("test_*.py"))


def where(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_browser_tests_are_in_tests_browser_and_nothing_else_is():
    files = modules()
    marked = {where(path) for path in files if BROWSER.search(path.read_text())}
    under = {where(path) for path in files if where(path).startswith("tests/browser/")}
    assert marked, "the browser tests are found"
    assert sorted(marked - under) == [], "browser tests belong in tests/browser/<app>/"
    assert sorted(under - marked) == [], "tests/browser/ holds browser tests only (marker browser)"


def test_end_to_end_files_are_in_tests_e2e():
    e2e = [where(path) for path in modules() if path.stem.endswith("_e2e")]
    assert e2e, "the end-to-end tests are found"
    assert [name for name in e2e if not name.startswith("tests/e2e/")] == []


def test_every_test_folder_is_a_kind_the_makefile_runs():
    makefile = (ROOT / "Makefile").read_text()
    kinds = dict(re.findall(r"^TESTS_(\w+) := (.+)$", makefile, re.M))
    assert set(kinds) == {"unit", "e2e", "browser"}
    folders = {folder for paths in kinds.values() for folder in paths.split()}
    for path in modules():
        assert any(where(path).startswith(f"{folder}/") for folder in folders), where(path)
