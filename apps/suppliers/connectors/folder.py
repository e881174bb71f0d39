"""A local drop folder: suppliers (or an upload job) put files in; processed ones move to done/ or failed/."""

from __future__ import annotations

import os
from pathlib import Path

from django.utils import timezone

from apps.suppliers.connectors.base import DEFAULT_MAX_BYTES, FEED_SUFFIXES, FeedFetchError


class FolderSource:
    def __init__(self, settings: dict) -> None:
        path = settings.get("path")
        if not path:
            raise FeedFetchError("drop folder: settings.path is required")
        self.root = Path(path)
        self.max_bytes = int(settings.get("max_bytes", DEFAULT_MAX_BYTES))
        if not self.root.is_dir():
            raise FeedFetchError(f"drop folder {self.root.name!r} does not exist")

    def pending(self) -> list[str]:
        files = [
            p
            for p in self.root.iterdir()
            if p.is_file() and p.suffix.lower() in FEED_SUFFIXES and not p.name.startswith(".")
        ]
        return [p.name for p in sorted(files, key=lambda p: (p.stat().st_mtime, p.name))]

    def read(self, name: str) -> bytes:
        path = self.root / name
        size = path.stat().st_size
        if size > self.max_bytes:
            raise FeedFetchError(f"{name}: {size} bytes is over the {self.max_bytes}-byte limit")
        return path.read_bytes()

    def finish(self, name: str, *, ok: bool) -> None:
        target = self.root / ("done" if ok else "failed")
        target.mkdir(exist_ok=True)
        stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
        os.replace(self.root / name, target / f"{stamp}-{name}")

    def close(self) -> None:
        return None
