"""Tunables of channel sync, from ``settings.STOCKROOM`` (the settings read them from the environment).

Read at call time, so a test can change them with the ``settings`` fixture; a worker process a test
or benchmark starts takes them from its environment through the settings.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings


def sync_setting(name: str) -> Any:
    """A channel sync tunable (``SYNC_*``) from ``settings.STOCKROOM``, where the settings read it from the
    environment with its default (inventory_site/settings/base.py, docs/configuration.md)."""
    return settings.STOCKROOM[name]


def redis_key(*parts: object) -> str:
    """Keys of the sync machinery, under the project's cache prefix so parallel setups never share them."""
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "stockroom")
    return ":".join([str(prefix), "sync", *(str(p) for p in parts)])
