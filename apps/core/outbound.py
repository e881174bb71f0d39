"""The one HTTP client for every request Stockroom makes to another server: channel connectors (and the
push protocol), supplier polling, the supplier order check, test connection.

The rule: http and https only, and never to a loopback, private, link-local, multicast, reserved or
unspecified address (IPv4 or IPv6, IPv4-mapped included) unless ``STOCKROOM_OUTBOUND_ALLOW`` names
the host or a network holding the address. It is checked on the address actually connected to: the
connection resolves the host itself, connects only to an allowed address and checks the socket's
peer, so a name that resolves to an internal address (or changes its answer between two lookups)
gets nowhere, and each redirect hop is a new connection checked the same way. A refusal raises
``OutboundRefused`` (code ``outbound_refused``, the host and why).

Exception texts leave here without the URL's query string or user info (requests' messages carry
the URL); a redirect to another host drops the request's secret headers.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import create_connection

from apps.core.redaction import redact_urls

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SCHEMES = ("http", "https")
# Dropped from a request that a redirect sends to another host (requests drops Authorization itself).
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-shopify-access-token", "x-amz-access-token"}
)


class OutboundRefused(requests.exceptions.ConnectionError):
    """A request the outbound rule does not allow: ``host`` and ``reason`` say which and why."""

    code = "outbound_refused"

    def __init__(self, host: str, reason: str, **kwargs: Any) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"outbound request refused: {host or 'no host'}: {reason}", **kwargs)


class _Refusal(Exception):
    """Raised inside urllib3 (not an OSError, so urllib3 neither retries nor wraps it)."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(host, reason)
        self.host = host
        self.reason = reason


def outbound_allowed() -> tuple[list[Network], set[str]]:
    """The networks and host names ``STOCKROOM_OUTBOUND_ALLOW`` lets through."""
    raw = getattr(settings, "STOCKROOM_OUTBOUND_ALLOW", ())
    entries = raw.split(",") if isinstance(raw, str) else list(raw)
    networks: list[Network] = []
    hosts: set[str] = set()
    for entry in (str(e).strip() for e in entries):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.add(entry.lower().rstrip("."))
    return networks, hosts


def address_refusal(address: IPAddress) -> str | None:
    """Why the outbound rule refuses this address whatever the allow list says; None for a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    checks = (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_reserved", "a reserved address"),
        ("is_private", "a private address"),
    )
    for attribute, reason in checks:
        if getattr(address, attribute):
            return reason
    if not address.is_global:
        return "not a public address"
    return None


def outbound_address_check(host: str, address: IPAddress) -> str | None:
    """Why connecting to ``address`` for ``host`` is refused, or None when it is allowed."""
    reason = address_refusal(address)
    if reason is None:
        return None
    networks, hosts = outbound_allowed()
    plain = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped else address
    if host.lower().rstrip(".") in hosts or any(plain in net or address in net for net in networks):
        return None
    return f"{address} is {reason} (not in STOCKROOM_OUTBOUND_ALLOW)"


def _ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])


def _checked_socket(
    host: str,
    port: int,
    timeout: Any,
    *,
    source_address: tuple[str, int] | None = None,
    socket_options: Any = None,
    connect_failed: Callable[[OSError], Exception] = lambda err: err,
) -> socket.socket:
    """Resolve ``host``, connect only to an allowed address, and check the peer of the socket made.

    Raises socket.gaierror (no such name), _Refusal (no allowed address), or ``connect_failed`` of the
    last connection error."""
    found = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    refusals: list[str] = []
    last: Exception | None = None
    for _family, _type, _proto, _name, sockaddr in found:
        address = _ip(str(sockaddr[0]))
        refusal = outbound_address_check(host, address)
        if refusal is not None:
            refusals.append(refusal)
            continue
        try:
            # An address literal: create_connection looks nothing up, so this is the address connected to.
            sock = create_connection(
                (str(address), port), timeout, source_address=source_address, socket_options=socket_options
            )
        except OSError as err:
            last = connect_failed(err)
            last.__cause__ = err
            continue
        peer = _ip(str(sock.getpeername()[0]))
        refusal = outbound_address_check(host, peer)
        if refusal is not None:
            sock.close()
            refusals.append(refusal)
            continue
        return sock
    if last is not None:
        raise last
    raise _Refusal(host, "; ".join(dict.fromkeys(refusals)) or "the name resolves to no address")


def _guarded_socket(connection: HTTPConnection) -> socket.socket:
    """urllib3's ``_new_conn`` through the outbound rule, failing with urllib3's own errors."""

    def connect_failed(err: OSError) -> Exception:
        if isinstance(err, TimeoutError):
            return ConnectTimeoutError(
                connection, f"Connection to {connection.host} timed out. (connect timeout={connection.timeout})"
            )
        return NewConnectionError(connection, f"Failed to establish a new connection: {err}")

    try:
        return _checked_socket(
            connection._dns_host,
            connection.port,
            connection.timeout,
            source_address=connection.source_address,
            socket_options=connection.socket_options,
            connect_failed=connect_failed,
        )
    except socket.gaierror as err:
        raise NameResolutionError(connection.host, connection, err) from err


def outbound_socket(host: str, port: int, *, timeout: float) -> socket.socket:
    """A TCP connection under the outbound rule, for what is not HTTP (SFTP): raises OutboundRefused, or
    OSError when the host cannot be resolved or reached."""
    try:
        return _checked_socket(host, port, timeout)
    except _Refusal as refusal:
        raise OutboundRefused(refusal.host, refusal.reason) from None


class GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _guarded_socket(self)


class GuardedHTTPSConnection(HTTPSConnection):
    # TLS still verifies the certificate against the host name: only the socket underneath is ours.
    def _new_conn(self) -> socket.socket:
        return _guarded_socket(self)


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class OutboundAdapter(HTTPAdapter):
    """requests' adapter on guarded connections; no proxies (the address checked must be the one reached)."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": GuardedHTTPConnectionPool,
            "https": GuardedHTTPSConnectionPool,
        }

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise OutboundRefused(urlsplit(proxy).hostname or "", "outbound requests do not go through a proxy")

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        if parts.scheme.lower() not in SCHEMES:
            reason = f"the scheme {parts.scheme or 'none'!r} is not http or https"
            raise OutboundRefused(parts.hostname or "", reason) from None
        if not parts.hostname:
            raise OutboundRefused("", "the URL names no host")
        try:
            return super().send(request, *args, **kwargs)
        except _Refusal as refusal:
            raise OutboundRefused(refusal.host, refusal.reason, request=request) from None


class OutboundSession(requests.Session):
    """A requests session that follows the outbound rule.

    ``follow_redirects``: False (connectors, the order check: their APIs do not redirect; a 3xx comes
    back as the answer) forces ``allow_redirects=False``; True follows them, each hop checked again,
    secret headers dropped when the host changes. ``secret_headers``: more header names to drop then.
    """

    def __init__(self, *, follow_redirects: bool = False, secret_headers: Iterable[str] = ()) -> None:
        super().__init__()
        self.follow_redirects = follow_redirects
        self.secret_headers = SECRET_HEADERS | {name.lower() for name in secret_headers}
        self.adapters.clear()
        adapter = OutboundAdapter()
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if not self.follow_redirects:
            kwargs["allow_redirects"] = False
        try:
            return super().send(request, **kwargs)
        except OutboundRefused:
            raise
        except requests.RequestException as err:
            raise _without_url_secrets(err) from None

    def merge_environment_settings(  # type: ignore[override]
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        """The environment's CA bundle and netrc, never its proxies: the address checked is the one reached."""
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        merged["proxies"] = {}
        return merged

    def rebuild_proxies(self, prepared_request: requests.PreparedRequest, proxies: Any) -> dict[str, str]:
        return {}

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        if self.should_strip_auth(response.request.url, prepared_request.url):
            for name in list(prepared_request.headers):
                if name.lower() in self.secret_headers:
                    del prepared_request.headers[name]

    def get_adapter(self, url: str) -> Any:
        try:
            return super().get_adapter(url)
        except requests.exceptions.InvalidSchema:
            parts = urlsplit(url)
            reason = f"the scheme {parts.scheme or 'none'!r} is not http or https"
            raise OutboundRefused(parts.hostname or "", reason) from None


def _without_url_secrets(err: requests.RequestException) -> requests.RequestException:
    """The same kind of error, its text without query strings or user info (the request and response kept)."""
    text = redact_urls(str(err))
    try:
        clean = type(err)(text, request=err.request, response=err.response)
    except TypeError:
        clean = requests.exceptions.ConnectionError(text, request=err.request, response=err.response)
    # What failed underneath (an OSError, a name resolution), for ``failure_text``; not chained, since
    # the wrappers' texts hold the URL.
    clean.root_cause = _root_cause(err)  # type: ignore[attr-defined]
    return clean


def outbound_session(*, follow_redirects: bool = False, secret_headers: Iterable[str] = ()) -> OutboundSession:
    return OutboundSession(follow_redirects=follow_redirects, secret_headers=secret_headers)


def status_text(status: int) -> str:
    """``HTTP 502 Bad Gateway``: the status and its standard phrase (never the remote's own reason or body)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP {status} {phrase}".rstrip()


def failure_text(err: requests.RequestException) -> str:
    """A short reason for a failed request, for a person: its kind, and the refusal's host and reason."""
    if isinstance(err, OutboundRefused):
        return str(err)
    if isinstance(err, requests.Timeout):
        return "timed out"
    if isinstance(err, requests.exceptions.SSLError):
        return "TLS failed (certificate or protocol)"
    if isinstance(err, requests.ConnectionError):
        cause = getattr(err, "root_cause", None) or _root_cause(err)
        if isinstance(cause, NameResolutionError | socket.gaierror):
            return "connection failed (the host name does not resolve)"
        if isinstance(cause, OSError) and cause.strerror:
            return f"connection failed ({cause.strerror})"
        return "connection failed"
    if isinstance(err, requests.exceptions.TooManyRedirects):
        return "too many redirects"
    return type(err).__name__


def _root_cause(err: BaseException) -> BaseException:
    """The innermost error under requests' and urllib3's wrappers (MaxRetryError.reason, __cause__)."""
    seen: set[int] = set()
    current: BaseException = err
    while id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException):
            inner = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        inner = inner or current.__cause__
        if inner is None:
            break
        current = inner
    return current
