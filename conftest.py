"""Fixtures every app's tests share: API clients with real tokens, and the demo-sized catalog."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rest_framework.test import APIClient

# `make test` runs the suite in parallel runners (pytest-xdist, `-n TEST_JOBS`). Each runner has a test
# database of its own (pytest-django names it after the runner) and a Redis namespace of its own (the key
# prefixes in inventory_site/settings/test.py); the servers and workers its tests start take free ports.


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: without the plugin (`-p no:xdist`) nothing asks
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Runners for `-n auto`: twice the cores, at most 8. Most of the suite's time is spent waiting on real
    workers, servers and schedules (soaks, takeovers, backoffs), not computing."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


# Markers of the tests that take seconds to minutes (real workers, beat, browsers, soaks, `make run`).
LONG = ("slow", "worker", "browser")


def _database_use(item: pytest.Item) -> int:
    """pytest-django's order (Django's): 0 for tests in a rolled-back transaction, 1 for transactional ones
    (their flush empties what migrations put in, so they come after), 2 for tests without the database."""
    from django.test import TestCase, TransactionTestCase

    cls = getattr(item, "cls", None)
    if cls is not None and issubclass(cls, TransactionTestCase):
        return 0 if issubclass(cls, TestCase) else 1
    from pytest_django.fixtures import validate_django_db

    marker = item.get_closest_marker("django_db")
    transactional = bool(marker) and any(validate_django_db(marker)[:2])  # transaction, reset_sequences
    fixtures = getattr(item, "fixturenames", [])
    if transactional or "transactional_db" in fixtures or "live_server" in fixtures:
        return 1
    return 0 if marker or "db" in fixtures else 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In parallel runs the long tests go out first (runners take one test at a time, `--maxschedchunk 1`),
    so that no long test starts last on one runner while the others have finished. Within Django's order:
    long tests without the database first (they may run anywhere), then the rolled-back ones, then the
    transactional ones, each long before short; a stable sort keeps the collection's order otherwise."""
    if not (getattr(config.option, "numprocesses", None) or os.environ.get("PYTEST_XDIST_WORKER")):
        return

    def rank(item: pytest.Item) -> tuple[int, bool]:
        long = any(item.get_closest_marker(name) for name in LONG)
        use = _database_use(item)
        return (-1 if use == 2 and long else use, not long)

    items.sort(key=rank)


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(username="staffer", password="pw-staffer-1", is_staff=True)


def _client_for(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


@pytest.fixture
def staff_api(staff_user, django_user_model) -> APIClient:
    """An API client with a staff token whose user may do everything (tokens carry their
    user's permissions; apps/core/tests/test_security.py covers users with fewer)."""
    from apps.core.services import token_create

    django_user_model.objects.filter(pk=staff_user.pk).update(is_superuser=True)
    return _client_for(token_create(staff_username=staff_user.username))


@pytest.fixture
def channel_api() -> Callable[[str], APIClient]:
    """Make an API client authenticated as the channel with this code."""
    from apps.core.services import token_create

    def make(code: str) -> APIClient:
        return _client_for(token_create(channel_code=code))

    return make


@pytest.fixture
def stockroom_knobs(settings, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set domain knobs (``settings.STOCKROOM``) for one test: in this process through the settings (code
    reads them there, never from the environment), and in the environment of the workers and servers the
    test starts afterwards (their settings read it). Values are typed as the settings type them."""

    def apply(**knobs: object) -> None:
        merged = dict(settings.STOCKROOM)
        for name, value in knobs.items():
            if name not in merged:
                raise KeyError(f"{name} is no knob of settings.STOCKROOM (docs/configuration.md)")
            merged[name] = type(merged[name])(value)
            monkeypatch.setenv(name, str(value))
        settings.STOCKROOM = merged

    return apply


CHROMIUM = "/usr/bin/chromium"  # Debian's chromium; `make test` installs it
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Chromium driven by Playwright, one per test session."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make browser)")
    # Playwright's sync API runs an event loop in this thread; Django must still allow its ORM here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def browser_page(browser):
    """A fresh tab with a clean context."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def page(browser, live_server):
    """A tab on the live server, 1360 px wide (the admin's lists must fit), downloads allowed."""
    context = browser.new_context(
        viewport={"width": 1360, "height": 900}, base_url=live_server.url, accept_downloads=True
    )
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()
