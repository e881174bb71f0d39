"""REST polling: paginated JSON, an auth header, timeouts, and retries with exponential backoff and jitter.

``settings``: url, items_key ("items"), next_key ("next": a link to the next page), page_param
("page", used when the body has no next link: pages are requested until one comes back
empty), first_page (1), auth_header ("Authorization"), auth_scheme ("Bearer"; "" sends the bare
secret), connect_timeout_s (3), read_timeout_s (10), attempts (4), backoff_s (0.5),
backoff_max_s (30), max_pages (1000), max_bytes (over all pages; at most FEED_MAX_BYTES).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests
import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from apps.core.outbound import OutboundRefused, outbound_session, status_text
from apps.core.redaction import redact_urls
from apps.suppliers.connectors.base import FeedFetchError, TransientFetchError
from apps.suppliers.limits import FeedTooLarge, feed_max_bytes
from apps.suppliers.services.reading import FeedUnreadable, feed_json_loads

log = structlog.get_logger("stockroom.suppliers.rest")

_CHUNK = 64 * 1024


@dataclass
class RestFeed:
    records: list[Any]
    pages: int
    bytes: int


def _headers(settings: dict, secret: str) -> dict[str, str]:
    headers = {"Accept": "application/json", "User-Agent": "Stockroom supplier poller"}
    if secret:
        scheme = settings.get("auth_scheme", "Bearer")
        headers[settings.get("auth_header", "Authorization")] = f"{scheme} {secret}" if scheme else secret
    return headers


def _get_page(session: requests.Session, url: str, params: dict, timeout: tuple[float, float], budget: int) -> Any:
    """One page. Redirects are not followed (a 3xx is a failed fetch); errors name the URL without its query."""
    shown = redact_urls(url)
    try:
        with session.get(url, params=params, timeout=timeout, stream=True, allow_redirects=False) as response:
            if response.status_code == 429 or response.status_code >= 500:
                raise TransientFetchError(f"{shown}: {status_text(response.status_code)}")
            if response.status_code != 200:
                raise FeedFetchError(f"{shown}: {status_text(response.status_code)}")
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > budget:
                raise FeedTooLarge(f"{shown}: a response of {declared} bytes is over the feed's {budget}-byte limit")
            body = bytearray()
            for chunk in response.iter_content(_CHUNK):
                body += chunk
                if len(body) > budget:
                    raise FeedTooLarge(f"{shown}: the feed is over its {budget}-byte limit; stopped reading")
    except OutboundRefused as err:
        raise FeedFetchError(f"{shown}: {err}") from err
    except requests.Timeout as err:
        raise TransientFetchError(f"{shown}: timed out") from err
    except requests.ConnectionError as err:
        raise TransientFetchError(f"{shown}: connection failed") from err
    except requests.RequestException as err:
        raise FeedFetchError(f"{shown}: {type(err).__name__}") from err
    try:
        return feed_json_loads(bytes(body)), len(body)
    except FeedUnreadable as err:
        raise FeedFetchError(f"{shown}: malformed JSON ({err})") from err


def _log_retry(url: str) -> Callable[[RetryCallState], None]:
    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.info("supplier_poll_retry", url=redact_urls(url), attempt=state.attempt_number, error=str(error))

    return log_retry


def rest_fetch(*, settings: dict, secret: str, trial: bool = False) -> RestFeed:
    """Fetch every page. A half-open breaker's trial poll gets a single attempt per page."""
    url = settings.get("url")
    if not url:
        raise FeedFetchError("rest: settings.url is required")
    items_key = settings.get("items_key", "items")
    next_key = settings.get("next_key", "next")
    page_param = settings.get("page_param", "page")
    page = int(settings.get("first_page", 1))
    timeout = (float(settings.get("connect_timeout_s", 3)), float(settings.get("read_timeout_s", 10)))
    max_pages = int(settings.get("max_pages", 1000))
    budget = feed_max_bytes(settings.get("max_bytes"))
    backoff = float(settings.get("backoff_s", 0.5))
    retrying = Retrying(
        stop=stop_after_attempt(1 if trial else int(settings.get("attempts", 4))),
        # backoff_s, 2x, 4x ... up to backoff_max_s, plus up to backoff_s of random jitter.
        wait=wait_exponential_jitter(multiplier=backoff, max=float(settings.get("backoff_max_s", 30)), jitter=backoff),
        retry=retry_if_exception_type(TransientFetchError),
        reraise=True,
        before_sleep=_log_retry(url),
    )
    records: list[Any] = []
    used = pages = 0
    next_url: str | None = url
    params: dict[str, Any] = {}
    link_mode: bool | None = None
    session = outbound_session(secret_headers=[settings.get("auth_header", "Authorization")])
    session.headers.update(_headers(settings, secret))
    try:
        while next_url is not None:
            if pages >= max_pages:
                raise FeedFetchError(f"more than {max_pages} pages; refusing an endless feed")
            if link_mode is not True:
                params = {page_param: page}
            target = next_url
            body, size = retrying(_get_page, session, target, params, timeout, budget - used)
            used += size
            pages += 1
            if isinstance(body, list):
                items, link = body, None
                link_mode = link_mode if link_mode is not None else False
            elif isinstance(body, dict) and isinstance(body.get(items_key), list):
                items = body[items_key]
                link = body.get(next_key)
                if link_mode is None:
                    link_mode = next_key in body
            else:
                raise FeedFetchError(f"page {pages}: expected a JSON object with a list in {items_key!r}")
            records.extend(items)
            if link_mode:
                next_url = urljoin(target, link) if link else None
                params = {}
            else:
                page += 1
                next_url = url if items else None
    finally:
        session.close()
    return RestFeed(records=records, pages=pages, bytes=used)
