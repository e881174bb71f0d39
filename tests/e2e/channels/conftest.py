"""The channel tests' machinery (apps/channels/tests/conftest.py), for the channel flows moved here: real Celery
workers, the channel simulator and the Amazon fake, the in-test platforms, and the autouse short sync tunables
and clean sync keys. Imported, not copied: the app's conftest stays the one definition."""

from apps.channels.tests.conftest import (  # noqa: F401 (fixtures)
    amazon,
    celery_worker,
    clean_sync_redis,
    fast_sync,
    scripted,
    shelf,
    simulator,
)
