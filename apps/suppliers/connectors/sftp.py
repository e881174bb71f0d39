"""Files fetched over SFTP (paramiko). The server's host key must be known: no trust on first use."""

from __future__ import annotations

import base64
import posixpath
import stat

import paramiko

from apps.core.outbound import OutboundRefused, outbound_socket
from apps.suppliers.connectors.base import FEED_SUFFIXES, FeedFetchError, TransientFetchError
from apps.suppliers.limits import feed_max_bytes, feed_read_capped, feed_size_check


def _host_key(text: str) -> paramiko.PKey:
    try:
        key_type, data = text.split()[:2]
        return paramiko.PKey.from_type_string(key_type, base64.b64decode(data))
    except (ValueError, paramiko.SSHException) as err:
        raise FeedFetchError("sftp: settings.host_key must be '<type> <base64>' as in known_hosts") from err


class SftpSource:
    """``settings``: host, port (22), username, path (a file, or a folder of feed files), host_key, timeout_s.

    The password is the supplier's secret. In a folder, taken files move to ``done/`` or ``failed/``.
    """

    def __init__(self, settings: dict, *, secret: str) -> None:
        for required in ("host", "username", "path", "host_key"):
            if not settings.get(required):
                raise FeedFetchError(f"sftp: settings.{required} is required")
        self.path = str(settings["path"])
        self.max_bytes = feed_max_bytes(settings.get("max_bytes"))
        timeout = float(settings.get("timeout_s", 10))
        try:
            sock = outbound_socket(str(settings["host"]), int(settings.get("port", 22)), timeout=timeout)
        except OutboundRefused as err:  # an internal address: not worth retrying
            raise FeedFetchError(f"sftp: {err}") from err
        except OSError as err:
            raise TransientFetchError(f"sftp: cannot connect: {err}") from err
        self.transport = paramiko.Transport(sock)
        self.transport.banner_timeout = timeout
        self.transport.auth_timeout = timeout
        try:
            self.transport.connect(
                hostkey=_host_key(settings["host_key"]), username=settings["username"], password=secret or None
            )
            client = paramiko.SFTPClient.from_transport(self.transport)
            if client is None:
                raise paramiko.SSHException("no SFTP subsystem")
            self.client: paramiko.SFTPClient = client
            channel = client.get_channel()
            if channel is not None:
                channel.settimeout(timeout)
            self.is_folder = stat.S_ISDIR(self.client.stat(self.path).st_mode or 0)
        except paramiko.AuthenticationException as err:
            self.close()
            raise FeedFetchError("sftp: authentication refused") from err
        except paramiko.SSHException as err:
            self.close()
            raise FeedFetchError(f"sftp: {err}") from err
        except (OSError, EOFError) as err:
            self.close()
            raise TransientFetchError(f"sftp: {err}") from err

    def pending(self) -> list[str]:
        if not self.is_folder:
            return [posixpath.basename(self.path)]
        entries = [
            e
            for e in self.client.listdir_attr(self.path)
            if stat.S_ISREG(e.st_mode or 0) and posixpath.splitext(e.filename)[1].lower() in FEED_SUFFIXES
        ]
        return [e.filename for e in sorted(entries, key=lambda e: (e.st_mtime or 0, e.filename))]

    def _full(self, name: str) -> str:
        return posixpath.join(self.path, name) if self.is_folder else self.path

    def read(self, name: str) -> bytes:
        path = self._full(name)
        try:
            size = self.client.stat(path).st_size or 0
            feed_size_check(size, limit=self.max_bytes, name=name)
            with self.client.open(path, "rb") as handle:
                handle.prefetch(size)
                return feed_read_capped(handle, limit=self.max_bytes, name=name)
        except (OSError, EOFError, paramiko.SSHException) as err:
            raise TransientFetchError(f"sftp: reading {name}: {err}") from err

    def finish(self, name: str, *, ok: bool) -> None:
        if not self.is_folder:
            return  # a single published file is the supplier's; we read it again next time
        target = posixpath.join(self.path, "done" if ok else "failed")
        try:
            self.client.stat(target)
        except OSError:
            self.client.mkdir(target)
        self.client.rename(self._full(name), posixpath.join(target, name))

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        self.transport.close()
