"""What every connector shares: its errors and the shape of a file source."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Protocol

FEED_SUFFIXES = {".csv": "csv", ".txt": "csv", ".xml": "xml", ".json": "json"}


class FeedFetchError(Exception):
    """The feed could not be fetched; the run is recorded as failed and counts against the breaker."""


class TransientFetchError(FeedFetchError):
    """Worth retrying: a timeout, a dropped connection, a 5xx or a 429."""


def format_of(name: str, default: str | None = None) -> str:
    fmt = FEED_SUFFIXES.get(PurePosixPath(name).suffix.lower())
    if fmt is None:
        if default is None:
            raise FeedFetchError(f"cannot tell the format of {name!r}; expected .csv, .xml or .json")
        return default
    return fmt


class FileSource(Protocol):
    """Files waiting to be taken in, oldest first; each is moved to done/ or failed/ afterwards."""

    def pending(self) -> list[str]: ...

    def read(self, name: str) -> bytes: ...

    def finish(self, name: str, *, ok: bool) -> None: ...

    def close(self) -> None: ...
