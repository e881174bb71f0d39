"""The map (docs/architecture.md) cannot rot: every `path:function` it names exists, and every code comment
that cites one of its sections names a section it has."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
MAP = ROOT / "docs" / "architecture.md"
# `apps/x/y.py:name` or `apps/x/y.py:Class.method`, in backticks.
REFERENCE = re.compile(r"`([\w/.-]+\.py):([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)`")
# A citation: the path of the map, a comma, and the title of one of its sections in double quotes.
CITATION = re.compile(r'docs/architecture\.md,\s*"([^"]+)"')
# The product brief's numbered sections, which are not in the repository (written so as not to match itself).
OLD_CITATION = re.compile(r"design[ ]section|design[ ]text", re.IGNORECASE)


def references() -> list[tuple[str, str]]:
    return REFERENCE.findall(MAP.read_text())


@cache
def definitions(path: str) -> frozenset[str]:
    """Top-level functions, classes and assigned names of a module, and Class.method for its classes."""
    names: set[str] = set()
    for node in ast.parse((ROOT / path).read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            names.update(
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
    return frozenset(names)


def sections() -> set[str]:
    titles = set()
    for line in MAP.read_text().splitlines():
        match = re.match(r"#{2,4}\s+(?:\d+\.\s+)?(.+?)\s*$", line)
        if match:
            titles.add(match.group(1))
    return titles


def test_the_map_names_the_main_flows():
    text = MAP.read_text()
    for heading in (
        "An order from request to push",
        "A supplier feed from poll to level",
        "A platform order from webhook to reservation",
        "A count from sheet to ledger",
        "What runs on which schedule (beat)",
        "Glossary",
        "A connector (a new sales platform)",
        "A supplier format",
        "A staff page",
    ):
        assert heading in text
    assert len(references()) > 80


@pytest.mark.slow
def test_every_file_and_function_the_map_names_exists():
    missing = []
    for path, name in references():
        if not (ROOT / path).is_file():
            missing.append(f"{path} (no such file)")
        elif name not in definitions(path):
            missing.append(f"{path}:{name}")
    assert missing == [], f"docs/architecture.md names what the code does not define: {missing}"


def test_every_beat_job_is_on_the_map():
    text = MAP.read_text()
    tasks = {job["task"] for job in settings.CELERY_BEAT_SCHEDULE.values()}
    by_name: dict[str, str] = {}
    for path in sorted((ROOT / "apps").glob("*/tasks.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                for decorator in node.decorator_list:
                    for keyword in getattr(decorator, "keywords", []):
                        if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                            by_name[keyword.value.value] = f"`{path.relative_to(ROOT)}:{node.name}`"
    missing = sorted(task for task in tasks if by_name.get(task, task) not in text)
    assert missing == [], f"beat jobs missing from the schedule table of docs/architecture.md: {missing}"


def test_code_that_cites_the_map_cites_a_section_it_has():
    titles = sections()
    cited = []
    for folder in ("apps", "sandbox", "inventory_site", "bench", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for title in CITATION.findall(path.read_text()):
                cited.append(title)
                assert title in titles, f'{path.relative_to(ROOT)} cites "{title}", not a section of {MAP.name}'
    assert cited, "the code cites the map"


def test_nothing_cites_the_old_design_sections():
    stale = []
    for folder in ("apps", "sandbox", "inventory_site", "bench", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if OLD_CITATION.search(line):
                    stale.append(f"{path.relative_to(ROOT)}:{number}")
    assert stale == [], f"cite docs/architecture.md instead: {stale}"
