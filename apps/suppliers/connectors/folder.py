"""A local drop folder: suppliers (or an upload job) put files in; processed ones move to done/ or failed/.

Every drop folder lies below the drop root (setting STOCKROOM_DROP_ROOT): a supplier's
``path`` is checked when it is saved and again at every poll, and the files are opened and
moved through the folder's own descriptor, never following a link out of it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path, PurePath

from django.conf import settings
from django.utils import timezone

from apps.suppliers.connectors.base import FEED_SUFFIXES, FeedFetchError
from apps.suppliers.limits import feed_max_bytes, feed_read_capped, feed_size_check


class DropPathRefused(ValueError):
    """A folder supplier's path that does not lie inside the drop root."""


def drop_root() -> Path:
    return Path(settings.STOCKROOM_DROP_ROOT).resolve()


def drop_folder_resolve(path: object) -> Path:
    """The real folder a supplier's ``path`` names, relative to the drop root or absolute inside it.

    Raises DropPathRefused for anything else: ``..``, a folder elsewhere, a link that leads out.
    """
    root = drop_root()
    if not isinstance(path, str) or not path.strip():
        raise DropPathRefused("settings.path must be a folder below the drop root")
    if "\x00" in path:
        raise DropPathRefused("settings.path must not contain NUL")
    if ".." in PurePath(path).parts:
        raise DropPathRefused("settings.path must not contain '..'")
    real = (root / path).resolve()  # an absolute path replaces the root; links are followed
    if real != root and root not in real.parents:
        raise DropPathRefused(f"settings.path must be a folder inside the drop root {root}")
    return real


class FolderSource:
    def __init__(self, settings: dict) -> None:
        path = settings.get("path")
        if not path:
            raise FeedFetchError("drop folder: settings.path is required")
        try:
            self.root = drop_folder_resolve(path)
        except DropPathRefused as err:
            raise FeedFetchError(f"drop folder refused: {err}") from err
        self.max_bytes = feed_max_bytes(settings.get("max_bytes"))
        try:
            # O_NOFOLLOW: the folder checked above is the folder opened, not a link swapped in since.
            self.fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as err:
            raise FeedFetchError(f"drop folder {self.root.name!r} cannot be opened ({err.strerror})") from err

    def pending(self) -> list[str]:
        with os.scandir(self.fd) as entries:
            files = [
                (e.stat(follow_symlinks=False).st_mtime, e.name)
                for e in entries
                # Regular files only: a link in the folder could point anywhere.
                if e.is_file(follow_symlinks=False)
                and PurePath(e.name).suffix.lower() in FEED_SUFFIXES
                and not e.name.startswith(".")
            ]
        return [name for _, name in sorted(files)]

    def read(self, name: str) -> bytes:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=self.fd)
        except OSError as err:
            raise FeedFetchError(f"{name}: cannot be opened ({err.strerror})") from err
        with os.fdopen(fd, "rb") as handle:
            feed_size_check(os.fstat(handle.fileno()).st_size, limit=self.max_bytes, name=name)
            return feed_read_capped(handle, limit=self.max_bytes, name=name)

    def finish(self, name: str, *, ok: bool) -> None:
        folder = "done" if ok else "failed"
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, dir_fd=self.fd)
        if not stat.S_ISDIR(os.stat(folder, dir_fd=self.fd, follow_symlinks=False).st_mode):
            raise FeedFetchError(f"drop folder: {folder}/ is not a folder (a link?); {name} left in place")
        target = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self.fd)
        try:
            stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
            os.replace(name, f"{stamp}-{name}", src_dir_fd=self.fd, dst_dir_fd=target)
        finally:
            os.close(target)

    def close(self) -> None:
        os.close(self.fd)
