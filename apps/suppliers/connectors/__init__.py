"""How supplier feeds reach us: REST polling, SFTP files, a drop folder (webhooks arrive through the API)."""

from __future__ import annotations

from apps.suppliers.connectors.base import FeedFetchError, FileSource, TransientFetchError
from apps.suppliers.connectors.folder import FolderSource
from apps.suppliers.connectors.rest import rest_fetch
from apps.suppliers.connectors.sftp import SftpSource

__all__ = ["FeedFetchError", "FileSource", "FolderSource", "SftpSource", "TransientFetchError", "rest_fetch"]
