"""Amazon, through the Selling Partner API (SP-API).

Quantities: Listings Items ``patchListingsItem`` with a JSON Patch ``merge`` on
``/attributes/fulfillment_availability`` (``fulfillment_channel_code`` ``DEFAULT``: the seller's own
stock; ``merge`` keeps the handling time and restock date the merchant set). A batch too large to
patch item by item within a push goes as one ``JSON_LISTINGS_FEED`` (Feeds API), under the feed type's
own limit (5 per 5 minutes per region; when it is spent such a batch waits for the next slot).
Read-back: ``searchListingsItems`` by SKU, 20 per request. Orders: Orders API 2026-01-01, polled with
``searchOrders`` (``lastUpdatedAfter``, merchant-fulfilled, the statuses that touch stock, items
included, ``paginationToken`` pages repeating the filters) and read one by one with ``getOrder`` for
the order truth sweep; Orders v0 (``getOrders`` + ``getOrderItems``, ``getOrder``) only where the
channel's ``orders_api`` setting falls back to it, its ``NextToken`` pages repeating the filters.

Authentication: a Login with Amazon access token from the refresh token, cached in Redis until
shortly before it expires, sent as ``x-amz-access-token``; a 403 about the token refreshes it once
and retries. Rate limits: one token bucket per operation and seller in Redis, at Amazon's documented
defaults until the ``x-amzn-RateLimit-Limit`` response header says otherwise; a 429 empties the bucket.

What "accepted" means: Amazon processes every listings submission asynchronously. A patch
answered ``ACCEPTED`` is accepted, ``INVALID`` is failed with Amazon's issues. A feed's items are
accepted when Amazon accepts the feed (``createFeed`` 202), the same promise as ``ACCEPTED``. The
feed's processing report is read on a later call: the SKUs it rejected are logged and remembered, and
their next push goes as an individual patch, so a rejection Amazon repeats comes back as a failed
push with Amazon's words (retried, then dead-lettered); reconciliation's read-back finds the quantity
Amazon still shows and queues that push. See docs/connectors/amazon.md.

Discover: the marketplace is the one location (the seller's own, merchant-fulfilled quantity). The
catalog is the Reports API 2021-06-30 merchant listings report (``createReport``
``GET_MERCHANT_LISTINGS_ALL_DATA``, ``getReport`` polled with growing pauses until DONE, FATAL or
CANCELLED, ``getReportDocument``, then the tab-separated document from its presigned URL, gzip or
not): one report instead of thousands of searches. Listings Amazon fulfils (fulfillment-channel
``AMAZON_*``) are platform-managed. No webhooks: Amazon notifies through SQS/EventBridge, so orders
come by poll and ``webhook_topics`` is empty.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import structlog
from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from apps.channels.conf import redis_key, sync_setting
from apps.channels.connectors.base import (
    Catalog,
    CatalogEntry,
    ChannelRef,
    Connector,
    ConnectorError,
    ConnectorThrottled,
    OrderLine,
    OrdersPage,
    PlatformLocation,
    PlatformOrder,
    Progress,
    PushResult,
    QuantityUpdate,
    Webhook,
    transport_failure,
)
from apps.channels.limits import redis_client
from apps.core.outbound import outbound_session, status_text
from apps.core.redaction import secrets_remember

log = structlog.get_logger("stockroom.sync")

DEFAULT_ENDPOINT = "https://sellingpartnerapi-na.amazon.com"
DEFAULT_TOKEN_URL = "https://api.amazon.com/auth/o2/token"
# Where the credentials may go unless STOCKROOM_AMAZON_ENDPOINT_OVERRIDE is on (the fakes in local runs
# and tests): Amazon's regional SP-API endpoints (and their sandboxes) and Login with Amazon.
AMAZON_ENDPOINTS = frozenset(
    f"https://{sandbox}sellingpartnerapi-{region}.amazon.com"
    for region in ("na", "eu", "fe")
    for sandbox in ("", "sandbox.")
)
AMAZON_TOKEN_URLS = frozenset({DEFAULT_TOKEN_URL})
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,60}")
FEEDS_API_VERSION = "2021-06-30"
REPORTS_API_VERSION = "2021-06-30"
LISTINGS_REPORT = "GET_MERCHANT_LISTINGS_ALL_DATA"
SELLERS_API_VERSION = "v1"
FEED_CONTENT_TYPE = "application/json; charset=UTF-8"
# The seller's own (merchant-fulfilled) stock; AMAZON_* codes are Amazon's warehouses.
FULFILLMENT_CHANNEL = "DEFAULT"

# Amazon's documented default usage plans: operation -> (requests per second, burst).
USAGE_PLANS: dict[str, tuple[float, int]] = {
    "patchListingsItem": (5.0, 5),
    "getListingsItem": (5.0, 10),
    "searchListingsItems": (5.0, 5),
    "createFeedDocument": (0.5, 15),
    "createFeed": (0.0083, 15),
    "getFeed": (2.0, 15),
    "getFeedDocument": (0.0222, 10),
    "searchOrders": (0.0056, 20),  # Orders 2026-01-01
    "getOrder": (0.5, 30),  # Orders 2026-01-01 and v0 (one version is used at a time)
    "getOrders": (0.0167, 20),  # Orders v0
    "getOrderItems": (0.5, 30),  # Orders v0
    # Not an operation: the Feeds API's own limit on JSON_LISTINGS_FEED submissions, 5 per 5 minutes per
    # region, on top of createFeed's. Its bucket is keyed by seller and endpoint (the region).
    "JSON_LISTINGS_FEED": (5 / 300, 5),
    "getMarketplaceParticipations": (0.016, 15),
    "createReport": (0.0167, 15),
    "getReport": (2.0, 15),
    "getReportDocument": (0.0167, 15),
}

PATCH_MAX = 20  # more updates than this in one push go as a feed
SEARCH_MAX = 20  # searchListingsItems takes at most 20 identifiers
ORDERS_PAGE = 20  # v0 getOrders page size: each order costs a getOrderItems call (0.5/s, burst 30)
SEARCH_ORDERS_PAGE = 100  # searchOrders brings each order's items along: a full page (its maximum)
ORDERS_API_VERSIONS = ("2026-01-01", "v0")
ORDERS_API_DEFAULT = "2026-01-01"
# searchOrders: merchant-fulfilled orders in every state that touches the seller's stock.
# UNFULFILLABLE applies to Amazon-fulfilled orders only.
SEARCH_STATUSES = "PENDING_AVAILABILITY,PENDING,UNSHIPPED,PARTIALLY_SHIPPED,SHIPPED,CANCELLED"
V0_STATUSES = "PendingAvailability,Pending,Unshipped,PartiallyShipped,Shipped,InvoiceUnconfirmed,Canceled"
TOKEN_EARLY_S = 60  # refresh an access token this long before Amazon says it expires
ORDERS_SETTLE = timedelta(minutes=2)  # Amazon's own lag: LastUpdatedBefore must be 2 min old
INITIAL_LOOKBACK = timedelta(days=1)  # the first poll of a channel that has no watermark yet
FEED_CHECK_EVERY_S = 30.0  # how often pending feeds are asked about
FEED_GIVE_UP_S = 24 * 3600.0
FACTS_TTL_S = 7 * 24 * 3600  # product type and fulfilment channels of a SKU
ORDER_LINES_TTL_S = 3 * 24 * 3600
READ_WAIT_S = 10.0  # read-back and order polling may wait this long for a token, per request
# The listings report: a catalog read may wait this long for a token (createReport refills one a minute)
# and this many times in a row; Amazon takes minutes to make the report, so it is asked about with
# growing pauses, and given up on after an hour.
REPORT_WAIT_S = 90.0
REPORT_ATTEMPTS = 6
REPORT_POLL_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
REPORT_GIVE_UP_S = 3600.0
# Names of the marketplaces sellers use most, for the location list (others show their id).
MARKETPLACE_NAMES = {
    "ATVPDKIKX0DER": "Amazon.com",
    "A2EUQ1WTGCTBG2": "Amazon.ca",
    "A1AM78C64UM0Y8": "Amazon.com.mx",
    "A2Q3Y263D00KWC": "Amazon.com.br",
    "A1F83G8C2ARO7P": "Amazon.co.uk",
    "A1PA6795UKMFR9": "Amazon.de",
    "A13V1IB3VIYZZH": "Amazon.fr",
    "APJ6JRA9NG5V4": "Amazon.it",
    "A1RKKUPIHCS9HS": "Amazon.es",
    "A1805IZSGTT6HS": "Amazon.nl",
    "A2NODRKZP88ZB9": "Amazon.se",
    "A1C3SOZRARQ6R3": "Amazon.pl",
    "AMEN7PMS3EDWL": "Amazon.com.be",
    "A1VC38T7YXB528": "Amazon.co.jp",
    "A39IBJ37TRP1C6": "Amazon.com.au",
    "A21TJRUUN4KGV": "Amazon.in",
}

ORDER_STATUSES = {
    "PendingAvailability": PlatformOrder.Status.PENDING,
    "Pending": PlatformOrder.Status.PENDING,
    "Unshipped": PlatformOrder.Status.OPEN,
    "PartiallyShipped": PlatformOrder.Status.PARTIALLY_FULFILLED,
    "Shipped": PlatformOrder.Status.FULFILLED,
    "InvoiceUnconfirmed": PlatformOrder.Status.FULFILLED,
    "Canceled": PlatformOrder.Status.CANCELLED,
    "Unfulfillable": PlatformOrder.Status.CANCELLED,
}
# Orders 2026-01-01 ``FulfillmentStatus``.
FULFILLMENT_STATUSES = {
    "PENDING_AVAILABILITY": PlatformOrder.Status.PENDING,
    "PENDING": PlatformOrder.Status.PENDING,
    "UNSHIPPED": PlatformOrder.Status.OPEN,
    "PARTIALLY_SHIPPED": PlatformOrder.Status.PARTIALLY_FULFILLED,
    "SHIPPED": PlatformOrder.Status.FULFILLED,
    "CANCELLED": PlatformOrder.Status.CANCELLED,
    "UNFULFILLABLE": PlatformOrder.Status.CANCELLED,
}


class AmazonSettingsSerializer(serializers.Serializer):
    endpoint = serializers.URLField(
        default=DEFAULT_ENDPOINT,
        help_text="The SP-API endpoint of the seller's region: sellingpartnerapi-na / -eu / -fe.amazon.com.",
    )
    token_url = serializers.URLField(
        default=DEFAULT_TOKEN_URL, help_text="Login with Amazon's token endpoint (the same for every region)."
    )
    seller_id = serializers.CharField(max_length=32, help_text="The Merchant Token (Seller Central: Account Info).")
    marketplace_id = serializers.CharField(
        max_length=32, help_text="e.g. ATVPDKIKX0DER (amazon.com), A1PA6795UKMFR9 (.de)"
    )
    product_type = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        default="",
        help_text="Only when every listing has this Amazon product type; blank: each listing's own, looked up.",
    )
    orders_api = serializers.ChoiceField(
        choices=ORDERS_API_VERSIONS,
        default=ORDERS_API_DEFAULT,
        help_text="Orders API version: 2026-01-01 (searchOrders, getOrder); v0 (getOrders, getOrderItems) "
        "only as a fallback until Amazon removes it.",
    )

    def validate_endpoint(self, value: str) -> str:
        value = value.rstrip("/")
        if value not in AMAZON_ENDPOINTS and not settings.STOCKROOM_AMAZON_ENDPOINT_OVERRIDE:
            raise serializers.ValidationError(
                f"Not an SP-API endpoint of Amazon: give one of {', '.join(sorted(AMAZON_ENDPOINTS))}."
            )
        return value

    def validate_token_url(self, value: str) -> str:
        if value not in AMAZON_TOKEN_URLS and not settings.STOCKROOM_AMAZON_ENDPOINT_OVERRIDE:
            raise serializers.ValidationError(f"Login with Amazon's token endpoint is {DEFAULT_TOKEN_URL}.")
        return value


class AmazonCredentialsSerializer(serializers.Serializer):
    client_id = serializers.CharField(max_length=200, help_text="The app's LWA client identifier.")
    client_secret = serializers.CharField(max_length=200, help_text="The app's LWA client secret.")
    refresh_token = serializers.CharField(max_length=1000, help_text="Atzr|... from authorizing the app.")


class _Throttled(Exception):
    """No token for the operation within the allowed wait (ours or Amazon's 429): nothing was sent."""

    def __init__(self, operation: str, wait: float) -> None:
        super().__init__(f"Amazon's {operation} budget is spent; next request in {wait:.1f} s")
        self.operation, self.wait = operation, wait


# --- per-operation token buckets ---------------------------------------------------------------

# Refill at the learned rate (else the documented one), then take a token or say how long until one.
# ARGV: default rate, burst, margin, 1 to take (0 to look only).
_BUCKET_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'rate')
local margin = tonumber(ARGV[3])
local rate = (tonumber(data[3]) or tonumber(ARGV[1])) * margin
local burst = math.max(1, math.floor(tonumber(ARGV[2]) * margin))
local tokens = tonumber(data[1])
if tokens == nil then tokens = burst end
local ts = tonumber(data[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
if ARGV[4] ~= '1' then
  return {tostring(tokens), tostring(rate)}
end
local ttl = math.ceil((burst / rate + 3600) * 1000)
if tokens >= 1 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {'0', tostring(rate)}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ttl)
return {tostring((1 - tokens) / rate), tostring(rate)}
"""

# Amazon said how fast (the rate header) and/or that the bucket is empty (a 429). ARGV: rate or '', drain 1/0.
_LEARN_SCRIPT = """
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[1], 'rate', ARGV[1])
end
if ARGV[2] == '1' then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'tokens', '0', 'ts', tostring(tonumber(t[1]) + tonumber(t[2]) / 1000000))
end
redis.call('PEXPIRE', KEYS[1], 7200000)
return 1
"""


class OperationBucket:
    """One SP-API operation's usage plan for one seller, shared by every worker (Amazon limits per seller and app)."""

    def __init__(self, seller_id: str, operation: str) -> None:
        self.operation = operation
        self.key = redis_key("amazon", "bucket", seller_id, operation)
        self.default_rate, self.burst = USAGE_PLANS[operation]
        self.margin = float(sync_setting("SYNC_RATE_MARGIN"))

    def _run(self, take: bool) -> tuple[float, float]:
        first, rate = redis_client().eval(
            _BUCKET_SCRIPT,
            1,
            self.key,
            repr(self.default_rate),
            str(self.burst),
            repr(self.margin),
            "1" if take else "0",
        )
        return float(first), float(rate)

    def take(self) -> float:
        """0.0 when a token was taken, else seconds until one can be (nothing taken)."""
        wait, _ = self._run(take=True)
        return max(0.0, wait)

    def look(self) -> tuple[float, float]:
        """(tokens now, requests per second we allow ourselves), taking nothing."""
        return self._run(take=False)

    def learn(self, rate: float | None, *, drain: bool = False) -> None:
        redis_client().eval(_LEARN_SCRIPT, 1, self.key, "" if rate is None else repr(rate), "1" if drain else "0")


def _rate_from(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("x-amzn-RateLimit-Limit")
    try:
        rate = float(raw) if raw else None
    except ValueError:
        return None
    return rate if rate and rate > 0 and math.isfinite(rate) else None


# --- HTTP ---------------------------------------------------------------------------------------

_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = outbound_session()
    return session


def _timeout() -> float:
    return float(sync_setting("SYNC_HTTP_TIMEOUT_S"))


def _amazon_errors(body: Any) -> str:
    """The codes of Amazon's ``{"errors": [{"code", "message", "details"}]}`` (``InvalidInput``, ``Unauthorized``).

    Only the codes: the messages and the rest of the answer are not shown to people (an answer may
    repeat the request, and where the endpoint may be overridden it is not necessarily Amazon's)."""
    errors = body.get("errors") if isinstance(body, dict) else None
    codes = [str(e.get("code")) for e in errors[:3] if isinstance(e, dict)] if isinstance(errors, list) else []
    codes = [code for code in codes if _ERROR_CODE.fullmatch(code)]
    return ", ".join(codes) if codes else "(no Amazon error code in the answer)"


def _about_token(body: Any) -> bool:
    """A 403 that a fresh access token can cure (expired, revoked, malformed), not a missing role."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return False
    text = " ".join(f"{e.get('code', '')} {e.get('message', '')}" for e in errors if isinstance(e, dict)).lower()
    return "access token" in text or "expired" in text


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _Api:
    """The SP-API as one channel's credentials see it; counts the requests it makes."""

    def __init__(self, channel: ChannelRef) -> None:
        self.channel = channel
        self.endpoint = str(channel.settings.get("endpoint") or DEFAULT_ENDPOINT).rstrip("/")
        self.token_url = str(channel.settings.get("token_url") or DEFAULT_TOKEN_URL)
        self.seller_id = str(channel.settings.get("seller_id") or "")
        self.marketplace_id = str(channel.settings.get("marketplace_id") or "")
        self.requests = 0
        fingerprint = "\n".join(
            [
                self.token_url,
                str(channel.credentials.get("client_id", "")),
                str(channel.credentials.get("refresh_token", "")),
            ]
        )
        self._token_key = redis_key("amazon", "lwa", hashlib.sha256(fingerprint.encode()).hexdigest()[:32])
        if not self.seller_id or not self.marketplace_id:
            raise ConnectorError("The Amazon channel needs seller_id and marketplace_id in its settings.")

    # Login with Amazon

    def access_token(self, *, fresh: bool = False) -> str:
        if not fresh:
            cached = redis_client().get(self._token_key)
            if cached:
                token = cached.decode() if isinstance(cached, bytes) else str(cached)
                secrets_remember([token])  # fetched by another process: redacted from this one's logs too
                return token
        credentials = self.channel.credentials
        form = {
            "grant_type": "refresh_token",
            "refresh_token": str(credentials.get("refresh_token", "")),
            "client_id": str(credentials.get("client_id", "")),
            "client_secret": str(credentials.get("client_secret", "")),
        }
        try:
            response = _session().post(
                self.token_url, data=form, headers={"Accept": "application/json"}, timeout=_timeout()
            )
        except requests.RequestException as err:
            raise transport_failure(err, f"Login with Amazon could not be reached at {self.token_url}") from err
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 429 or response.status_code >= 500:
            raise ConnectorError(
                f"Login with Amazon is not answering now (HTTP {response.status_code}); try again later."
            )
        if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            # The OAuth error code only (invalid_grant...), never the answer's own text.
            error = body.get("error") if isinstance(body, dict) else None
            if not isinstance(error, str) or not re.fullmatch(r"[a-z_]{1,60}", error):
                error = status_text(response.status_code)
            hint = {
                "invalid_client": "check client_id and client_secret (the app's LWA credentials)",
                "invalid_grant": "the refresh token is wrong or revoked: authorize the app again and paste the new one",
            }.get(str(error), "check the credentials and token_url")
            raise ConnectorError(f"Login with Amazon refused the credentials ({error}); {hint}.")
        token = str(body["access_token"])
        secrets_remember([token])
        try:
            lifetime = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        keep = lifetime - TOKEN_EARLY_S if lifetime > 2 * TOKEN_EARLY_S else lifetime / 2
        if keep > 0:
            redis_client().set(self._token_key, token, px=max(1, int(keep * 1000)))
        return token

    def forget_token(self) -> None:
        redis_client().delete(self._token_key)

    # SP-API calls

    def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        max_wait: float,
    ) -> tuple[int, Any]:
        """One operation: waits up to ``max_wait`` for its token. Raises _Throttled (nothing sent or a 429)
        and ConnectorError (unreachable, 5xx, access denied); returns any other answer."""
        bucket = OperationBucket(self.seller_id, operation)
        refreshed = False
        while True:
            waited = 0.0
            while (wait := bucket.take()) > 0:
                if waited + wait > max_wait:
                    raise _Throttled(operation, wait)
                time.sleep(wait)
                waited += wait
            token = self.access_token(fresh=refreshed)
            headers = {
                "x-amz-access-token": token,
                "Accept": "application/json",
                "User-Agent": "Stockroom/1.0 (Language=Python)",
            }
            try:
                response = _session().request(
                    method, self.endpoint + path, params=params, json=body, headers=headers, timeout=_timeout()
                )
            except requests.RequestException as err:
                raise transport_failure(err, f"Amazon could not be reached ({operation})") from err
            self.requests += 1
            try:
                answer = response.json() if response.content else None
            except ValueError:
                answer = None  # not JSON: nothing of it is shown
            rate = _rate_from(response.headers)
            status = response.status_code
            request_id = response.headers.get("x-amzn-RequestId", "")
            if status == 429:
                bucket.learn(rate, drain=True)
                _, allowed = bucket.look()
                raise _Throttled(operation, 1.0 / max(allowed, 0.001))
            if rate is not None:
                bucket.learn(rate)
            if status == 403 and not refreshed and _about_token(answer):
                self.forget_token()
                refreshed = True
                continue
            if status == 403:
                raise ConnectorError(
                    f"Amazon denied {operation} (403 {_amazon_errors(answer)}; request {request_id}): "
                    "check that the app has the Product Listing and Inventory and Order Tracking roles "
                    f"and that seller_id {self.seller_id} is the account that authorized it."
                )
            if status >= 500:
                raise ConnectorError(
                    f"Amazon failed {operation}: HTTP {status} {_amazon_errors(answer)} (request {request_id})"
                )
            return status, answer

    def upload(self, url: str, content: bytes) -> None:
        """A feed document to its presigned URL (no access token: the URL is the credential)."""
        try:
            response = _session().put(
                url, data=content, headers={"Content-Type": FEED_CONTENT_TYPE}, timeout=_timeout()
            )
        except requests.RequestException as err:
            raise transport_failure(err, "The feed document could not be uploaded") from err
        self.requests += 1
        if not 200 <= response.status_code < 300:
            raise ConnectorError(f"The feed document upload was refused: {status_text(response.status_code)}")

    def download_text(self, url: str, compression: str | None, what: str) -> str:
        """A report document from its presigned URL, as text (its Content-Type's charset; Amazon's flat files
        are often Cp1252)."""
        try:
            response = _session().get(url, timeout=_timeout())
        except requests.RequestException as err:
            raise ConnectorError(f"The {what} could not be downloaded: {err}") from err
        self.requests += 1
        if response.status_code != 200:
            raise ConnectorError(f"The {what} download was refused: HTTP {response.status_code}")
        try:
            raw = gzip.decompress(response.content) if compression == "GZIP" else response.content
        except (OSError, EOFError) as err:
            raise ConnectorError(f"The {what} is not the gzip Amazon said it is: {err}") from err
        charset = requests.utils.get_encoding_from_headers(response.headers)
        for encoding in (charset, "utf-8", "cp1252"):
            if not encoding or encoding.lower() == "iso-8859-1":  # requests' guess for any text/*
                continue
            try:
                return raw.decode(encoding)
            except (LookupError, UnicodeDecodeError):
                continue
        return raw.decode("cp1252", errors="replace")

    def download(self, url: str, compression: str | None) -> Any:
        try:
            response = _session().get(url, timeout=_timeout())
        except requests.RequestException as err:
            raise transport_failure(err, "The feed report could not be downloaded") from err
        self.requests += 1
        if response.status_code != 200:
            raise ConnectorError(f"The feed report download was refused: HTTP {response.status_code}")
        raw = gzip.decompress(response.content) if compression == "GZIP" else response.content
        try:
            return json.loads(raw)
        except ValueError as err:
            raise ConnectorError("The feed report is not JSON.") from err


# --- what Amazon knows about a SKU ---------------------------------------------------------------


@dataclass(frozen=True)
class ListingFacts:
    product_type: str
    channels: tuple[str, ...]  # fulfillment channel codes: DEFAULT (the seller's own stock), AMAZON_NA, ...
    quantity: int | None  # in the DEFAULT channel (None: none there)

    @property
    def amazon_fulfilled_only(self) -> bool:
        return bool(self.channels) and FULFILLMENT_CHANNEL not in self.channels


def _facts_from(item: Mapping[str, Any], marketplace_id: str) -> ListingFacts | None:
    summaries = item.get("summaries") or []
    summary = next((s for s in summaries if isinstance(s, dict) and s.get("marketplaceId") == marketplace_id), None)
    if summary is None and summaries:
        return None  # listed, but not in this marketplace
    product_type = str((summary or {}).get("productType") or "")
    channels, quantity = [], None
    for entry in item.get("fulfillmentAvailability") or []:
        if not isinstance(entry, dict):
            continue
        code = str(entry.get("fulfillmentChannelCode") or "")
        channels.append(code)
        if code == FULFILLMENT_CHANNEL and isinstance(entry.get("quantity"), int):
            quantity = int(entry["quantity"])
    return ListingFacts(product_type, tuple(channels), quantity)


class _FactsCache:
    """Product type and channels per SKU, for the seller and marketplace (the quantity is never cached)."""

    def __init__(self, api: _Api) -> None:
        self.key = redis_key("amazon", "listing", api.seller_id, api.marketplace_id)

    def get(self, skus: Sequence[str]) -> dict[str, ListingFacts]:
        if not skus:
            return {}
        found: dict[str, ListingFacts] = {}
        for sku, raw in zip(skus, redis_client().hmget(self.key, list(skus)), strict=True):
            if raw:
                data = json.loads(raw)
                found[sku] = ListingFacts(str(data["pt"]), tuple(data["ch"]), None)
        return found

    def put(self, facts: Mapping[str, ListingFacts]) -> None:
        if not facts:
            return
        client = redis_client()
        client.hset(
            self.key,
            mapping={sku: json.dumps({"pt": f.product_type, "ch": list(f.channels)}) for sku, f in facts.items()},
        )
        client.expire(self.key, FACTS_TTL_S)

    def forget(self, skus: Sequence[str]) -> None:
        if skus:
            redis_client().hdel(self.key, *skus)


def _feed_bucket(api: _Api) -> OperationBucket:
    """JSON_LISTINGS_FEED submissions of the seller in the endpoint's region (Amazon: 5 per 5 minutes per region)."""
    region = urlsplit(api.endpoint).netloc or api.endpoint
    return OperationBucket(f"{api.seller_id}@{region}", "JSON_LISTINGS_FEED")


def _sku(update: QuantityUpdate) -> str:
    return update.external_id or update.sku


# --- the connector ------------------------------------------------------------------------------


class AmazonConnector(Connector):
    name = "amazon"
    credential_destinations = ("endpoint", "token_url")
    label = "Amazon (Selling Partner API)"
    settings_serializer = AmazonSettingsSerializer
    credentials_serializer = AmazonCredentialsSerializer
    receives_orders = True
    polls_orders = True
    # A JSON listings feed carries up to 25,000 messages; 1,000 keeps a document and its report small.
    max_batch = 1000
    # Amazon limits each operation on its own (USAGE_PLANS, one Redis bucket each, learned from the
    # x-amzn-RateLimit-Limit header); the channel's budget is that of a push's own operation,
    # patchListingsItem (5 a second, burst 5), so it never holds pushes back below what Amazon allows.
    default_rate_per_s, default_burst = USAGE_PLANS["patchListingsItem"]
    # Empty: Amazon has no HTTP order webhooks (notifications go through SQS/EventBridge); orders are polled.
    webhook_topics = ()

    def account(self, settings: Mapping[str, Any]) -> str:
        seller, marketplace = str(settings.get("seller_id") or ""), str(settings.get("marketplace_id") or "")
        return f"{seller}@{marketplace}" if seller and marketplace else ""

    # Quantities ---------------------------------------------------------------------------------

    def push(self, channel: ChannelRef, updates: Sequence[QuantityUpdate]) -> PushResult:
        api = _Api(channel)
        result = PushResult()
        if not updates:
            return result
        self._settle_feeds(api, channel)
        inline_wait = float(sync_setting("SYNC_INLINE_WAIT_S"))
        deadline = time.monotonic() + _push_budget()
        product_type = str(channel.settings.get("product_type") or "")
        skus = {u.listing_id: _sku(u) for u in updates}
        try:
            if product_type:
                facts = _FactsCache(api).get(list(skus.values()))
            else:
                facts = self._facts(api, list(skus.values()), max_wait=inline_wait, use_cache=True)
        except _Throttled as throttled:
            return PushResult(throttled_for=throttled.wait, requests=api.requests)
        sendable: list[tuple[QuantityUpdate, str, str]] = []
        for update in updates:
            sku, known = skus[update.listing_id], facts.get(skus[update.listing_id])
            if known is None and not product_type:
                result.failed[update.listing_id] = (
                    f"Amazon has no listing with seller SKU {sku!r} in marketplace {api.marketplace_id}."
                )
            elif known is not None and known.amazon_fulfilled_only:
                result.failed[update.listing_id] = (
                    f"{sku!r} is fulfilled by Amazon ({', '.join(known.channels)}): Amazon counts that stock, "
                    "Stockroom does not push it."
                )
            else:
                sendable.append((update, sku, product_type or (known.product_type if known else "")))
        if not sendable:
            result.requests = api.requests
            return result
        rejected = _FeedLedger(channel).rejected([sku for _, sku, _ in sendable])
        if len(sendable) <= self._patch_capacity(api):
            patches, feed = sendable, []
        else:
            patches = [item for item in sendable if item[1] in rejected]
            feed = [item for item in sendable if item[1] not in rejected]
            if feed and (feed_wait := _feed_bucket(api).take()) > 0:
                # JSON_LISTINGS_FEED's own budget (5 per 5 minutes per region) is spent: the batch waits for
                # the next feed (Amazon refills one a minute) rather than trickling out item by item over
                # several pushes; nothing is sent, nothing counts as an attempt.
                return PushResult(throttled_for=feed_wait, requests=api.requests)
        answered = False
        if patches:
            outcome = self._patch_each(api, patches, result, inline_wait=inline_wait, deadline=deadline)
            if isinstance(outcome, _Throttled):
                return PushResult(throttled_for=outcome.wait, requests=api.requests)
            answered = True
        if feed:
            outcome = self._send_feed(
                api, channel, feed, result, inline_wait=inline_wait, deadline=deadline, answered=answered
            )
            if isinstance(outcome, _Throttled):
                return PushResult(throttled_for=outcome.wait, requests=api.requests)
        result.requests = api.requests
        return result

    def _patch_capacity(self, api: _Api) -> int:
        """How many patches fit in a push: what the bucket holds plus what it refills in half the budget."""
        bucket = OperationBucket(api.seller_id, "patchListingsItem")
        tokens, rate = bucket.look()
        burst = max(1, math.floor(bucket.burst * bucket.margin))
        return min(PATCH_MAX, max(burst, math.floor(tokens + rate * _push_budget() / 2)))

    def _patch_each(
        self,
        api: _Api,
        items: Sequence[tuple[QuantityUpdate, str, str]],
        result: PushResult,
        *,
        inline_wait: float,
        deadline: float,
    ) -> _Throttled | None:
        """Patch item by item. Returns _Throttled when Amazon took nothing (the batch is tried again)."""
        answered = False
        rejected_cleared: list[str] = []
        stale_facts: list[str] = []
        for index, (update, sku, product_type) in enumerate(items):
            body = {
                "productType": product_type,
                "patches": [
                    {
                        "op": "merge",
                        "path": "/attributes/fulfillment_availability",
                        "value": [
                            {"fulfillment_channel_code": FULFILLMENT_CHANNEL, "quantity": max(0, update.available)}
                        ],
                    }
                ],
            }
            path = f"/listings/{_listings_version()}/items/{quote(api.seller_id, safe='')}/{quote(sku, safe='')}"
            while True:
                allowance = inline_wait if not answered else max(0.0, deadline - time.monotonic())
                try:
                    status, answer = api.call(
                        "patchListingsItem",
                        "PATCH",
                        path,
                        params={"marketplaceIds": api.marketplace_id, "includedData": "issues"},
                        body=body,
                        max_wait=allowance,
                    )
                except _Throttled as throttled:
                    if not answered:
                        return throttled
                    if time.monotonic() + throttled.wait < deadline:
                        time.sleep(throttled.wait)
                        continue
                    self._fail_rest(items[index:], result, f"not sent: {throttled}")
                    result.pause_for = throttled.wait
                    return None
                except ConnectorError as err:
                    if not answered:
                        raise
                    self._fail_rest(items[index:], result, str(err))
                    return None
                break
            answered = True
            if status == 200 and isinstance(answer, dict) and answer.get("status") == "ACCEPTED":
                result.accepted.append(update.listing_id)
                rejected_cleared.append(sku)
            elif status == 200 and isinstance(answer, dict):
                result.failed[update.listing_id] = f"Amazon rejected {sku!r}: {_issues_text(answer.get('issues'))}"
                stale_facts.append(sku)  # a product type changed on Amazon is looked up again next time
            else:
                result.failed[update.listing_id] = f"Amazon refused {sku!r}: HTTP {status} {_amazon_errors(answer)}"
        if rejected_cleared:
            _FeedLedger(api.channel).clear(rejected_cleared)
        _FactsCache(api).forget(stale_facts)
        return None

    @staticmethod
    def _fail_rest(items: Sequence[tuple[QuantityUpdate, str, str]], result: PushResult, reason: str) -> None:
        for update, _, _ in items:
            result.failed[update.listing_id] = reason

    def _send_feed(
        self,
        api: _Api,
        channel: ChannelRef,
        items: Sequence[tuple[QuantityUpdate, str, str]],
        result: PushResult,
        *,
        inline_wait: float,
        deadline: float,
        answered: bool,
    ) -> _Throttled | None:
        """One JSON_LISTINGS_FEED with a PATCH message per item; accepted when Amazon accepts the feed."""
        messages = [
            {
                "messageId": number,
                "sku": sku,
                "operationType": "PATCH",
                "productType": product_type,
                "patches": [
                    {
                        "op": "merge",
                        "path": "/attributes/fulfillment_availability",
                        "value": [
                            {"fulfillment_channel_code": FULFILLMENT_CHANNEL, "quantity": max(0, update.available)}
                        ],
                    }
                ],
            }
            for number, (update, sku, product_type) in enumerate(items, start=1)
        ]
        document = {
            "header": {"sellerId": api.seller_id, "version": "2.0", "issueLocale": "en_US"},
            "messages": messages,
        }
        content = json.dumps(document, separators=(",", ":")).encode()

        def call(operation: str, path: str, body: Any) -> Any:
            while True:
                allowance = inline_wait if not answered else max(0.0, deadline - time.monotonic())
                try:
                    status, answer = api.call(operation, "POST", path, body=body, max_wait=allowance)
                except _Throttled as throttled:
                    if operation == "createFeed":
                        _feed_bucket(api).learn(None, drain=True)  # Amazon's feed-type limit may say so too
                        raise
                    if answered and time.monotonic() + throttled.wait < deadline:
                        time.sleep(throttled.wait)
                        continue
                    raise
                if status not in (201, 202):
                    raise ConnectorError(f"Amazon refused {operation}: HTTP {status} {_amazon_errors(answer)}")
                return answer

        try:
            created = call(
                "createFeedDocument", f"/feeds/{FEEDS_API_VERSION}/documents", {"contentType": FEED_CONTENT_TYPE}
            )
            api.upload(str(created["url"]), content)
            feed = call(
                "createFeed",
                f"/feeds/{FEEDS_API_VERSION}/feeds",
                {
                    "feedType": "JSON_LISTINGS_FEED",
                    "marketplaceIds": [api.marketplace_id],
                    "inputFeedDocumentId": str(created["feedDocumentId"]),
                },
            )
            feed_id = str(feed["feedId"])
        except _Throttled as throttled:
            if not answered:
                return throttled
            self._fail_rest(items, result, f"not sent: {throttled}")
            result.pause_for = throttled.wait
            return None
        except (ConnectorError, KeyError, TypeError) as err:
            if not answered and isinstance(err, ConnectorError):
                raise
            self._fail_rest(items, result, f"the feed was not submitted: {err}")
            return None
        _FeedLedger(channel).submitted(feed_id, [sku for _, sku, _ in items])
        result.accepted.extend(update.listing_id for update, _, _ in items)
        log.info("amazon_feed_submitted", channel=channel.code, feed=feed_id, messages=len(items))
        return None

    def settle_feeds(self, channel: ChannelRef) -> dict[str, str]:
        """Read the processing reports of this channel's finished feeds now; returns SKU -> why Amazon rejected it."""
        return self._settle_feeds(_Api(channel), channel, force=True)

    def _settle_feeds(self, api: _Api, channel: ChannelRef, *, force: bool = False) -> dict[str, str]:
        ledger = _FeedLedger(channel)
        if not ledger.due(force=force):
            return {}
        rejected: dict[str, str] = {}
        for feed_id, record in ledger.pending()[:3]:
            try:
                status, answer = api.call(
                    "getFeed", "GET", f"/feeds/{FEEDS_API_VERSION}/feeds/{quote(feed_id, safe='')}", max_wait=0.0
                )
                if status != 200 or not isinstance(answer, dict):
                    raise ConnectorError(f"getFeed {feed_id}: HTTP {status} {_amazon_errors(answer)}")
                state = str(answer.get("processingStatus"))
                if state in ("IN_QUEUE", "IN_PROGRESS"):
                    if time.time() - float(record["at"]) > FEED_GIVE_UP_S:
                        log.warning("amazon_feed_abandoned", channel=channel.code, feed=feed_id, status=state)
                        ledger.forget(feed_id)
                    continue
                failures = self._feed_failures(api, answer, record["skus"])
            except (_Throttled, ConnectorError) as err:
                log.info("amazon_feed_check_later", channel=channel.code, feed=feed_id, reason=str(err))
                break
            for sku, reason in failures.items():
                log.warning("amazon_feed_item_rejected", channel=channel.code, feed=feed_id, sku=sku, reason=reason)
            ledger.settled(feed_id, failures)
            rejected.update(failures)
        return rejected

    def _feed_failures(self, api: _Api, feed: Mapping[str, Any], skus: Sequence[str]) -> dict[str, str]:
        """SKU -> why, from the processing report of a finished feed (FATAL/CANCELLED: every SKU)."""
        state = str(feed.get("processingStatus"))
        report: Any = None
        document_id = feed.get("resultFeedDocumentId")
        if document_id:
            status, answer = api.call(
                "getFeedDocument",
                "GET",
                f"/feeds/{FEEDS_API_VERSION}/documents/{quote(str(document_id), safe='')}",
                max_wait=READ_WAIT_S,
            )
            if status != 200 or not isinstance(answer, dict) or "url" not in answer:
                raise ConnectorError(f"getFeedDocument {document_id}: HTTP {status} {_amazon_errors(answer)}")
            report = api.download(str(answer["url"]), answer.get("compressionAlgorithm"))
        if state != "DONE":
            why = f"the feed ended {state}"
            issues = report.get("issues") if isinstance(report, dict) else None
            if isinstance(issues, list) and issues:
                why += ": " + _issues_text(issues)
            return dict.fromkeys(skus, why)
        failures: dict[str, list[str]] = {}
        for issue in (report or {}).get("issues") or []:
            if not isinstance(issue, dict) or issue.get("severity") != "ERROR":
                continue
            number = issue.get("messageId")
            if isinstance(number, int) and 1 <= number <= len(skus):
                failures.setdefault(skus[number - 1], []).append(str(issue.get("message", "")))
        return {sku: "Amazon rejected the feed message: " + "; ".join(reasons) for sku, reasons in failures.items()}

    # Read-back ---------------------------------------------------------------------------------

    def read_back(self, channel: ChannelRef, listings: Sequence[QuantityUpdate]) -> dict[int, int | None]:
        api = _Api(channel)
        self._settle_feeds(api, channel)
        skus = {listing.listing_id: _sku(listing) for listing in listings}
        try:
            facts = self._facts(api, list(set(skus.values())), max_wait=READ_WAIT_S, use_cache=False)
        except _Throttled as throttled:
            raise ConnectorThrottled(str(throttled), wait_s=throttled.wait) from throttled
        return {listing_id: (facts[sku].quantity if sku in facts else None) for listing_id, sku in skus.items()}

    def _facts(self, api: _Api, skus: Sequence[str], *, max_wait: float, use_cache: bool) -> dict[str, ListingFacts]:
        """What Amazon shows for these SKUs (absent: no such listing in the marketplace); fills the cache."""
        cache = _FactsCache(api)
        known = cache.get(skus) if use_cache else {}
        wanted = [sku for sku in dict.fromkeys(skus) if sku not in known]
        found: dict[str, ListingFacts] = {}
        # Identifiers travel comma-separated: a SKU with a comma is asked for on its own.
        listable = [sku for sku in wanted if "," not in sku]
        for start in range(0, len(listable), SEARCH_MAX):
            chunk = listable[start : start + SEARCH_MAX]
            status, answer = api.call(
                "searchListingsItems",
                "GET",
                f"/listings/{_listings_version()}/items/{quote(api.seller_id, safe='')}",
                params={
                    "marketplaceIds": api.marketplace_id,
                    "identifiersType": "SKU",
                    "identifiers": ",".join(chunk),
                    "includedData": "summaries,fulfillmentAvailability",
                    "pageSize": str(SEARCH_MAX),
                },
                max_wait=max_wait,
            )
            if status != 200 or not isinstance(answer, dict):
                raise ConnectorError(f"Amazon refused searchListingsItems: HTTP {status} {_amazon_errors(answer)}")
            for item in answer.get("items") or []:
                if (
                    isinstance(item, dict)
                    and item.get("sku") in chunk
                    and (facts := _facts_from(item, api.marketplace_id))
                ):
                    found[str(item["sku"])] = facts
        for sku in wanted:
            if "," not in sku:
                continue
            status, answer = api.call(
                "getListingsItem",
                "GET",
                f"/listings/{_listings_version()}/items/{quote(api.seller_id, safe='')}/{quote(sku, safe='')}",
                params={"marketplaceIds": api.marketplace_id, "includedData": "summaries,fulfillmentAvailability"},
                max_wait=max_wait,
            )
            if status == 404:
                continue
            if status != 200 or not isinstance(answer, dict):
                raise ConnectorError(f"Amazon refused getListingsItem: HTTP {status} {_amazon_errors(answer)}")
            if facts := _facts_from(answer, api.marketplace_id):
                found[sku] = facts
        cache.put(found)
        return {**known, **found}

    # Orders ------------------------------------------------------------------------------------

    # getOrder is 0.5 a second (burst 30) in both versions, v0 adds a getOrderItems call per order:
    # ten orders per sweep batch fit the burst many times over and take 20-40 s once it is spent.
    orders_get_batch = 10

    def orders_since(self, channel: ChannelRef, since: datetime | None, cursor: str | None = None) -> OrdersPage:
        api = _Api(channel)
        now = timezone.now()
        state: dict[str, str] | None = None
        if cursor:
            try:
                state = json.loads(cursor)
                next_token, after = str(state["next"]), str(state["after"])
            except (ValueError, KeyError, TypeError) as err:
                raise ConnectorError(f"Unreadable Amazon orders cursor: {cursor[:80]!r}") from err
        else:
            next_token, after = "", _iso(min(since or now - INITIAL_LOOKBACK, now).replace(microsecond=0))
        v0 = _orders_api(channel) == "v0"
        if v0:
            # Every page repeats the filters: NextToken does not replace them (later pages would otherwise
            # bring Amazon-fulfilled orders in).
            params = {
                "MarketplaceIds": api.marketplace_id,
                "LastUpdatedAfter": after,
                # Orders Amazon fulfils from its own warehouses never touch the seller's stock.
                "FulfillmentChannels": "MFN",
                "OrderStatuses": V0_STATUSES,
                "MaxResultsPerPage": str(ORDERS_PAGE),
            }
            if next_token:
                params["NextToken"] = next_token
            operation, path = "getOrders", "/orders/v0/orders"
        else:
            params = {
                "marketplaceIds": api.marketplace_id,
                "lastUpdatedAfter": after,
                "fulfilledBy": "MERCHANT",
                "fulfillmentStatuses": SEARCH_STATUSES,
                "maxResultsPerPage": str(SEARCH_ORDERS_PAGE),
                "includedData": "FULFILLMENT",
            }
            if next_token:
                params["paginationToken"] = next_token
            operation, path = "searchOrders", f"/orders/{ORDERS_API_DEFAULT}/orders"
        try:
            status, answer = api.call(operation, "GET", path, params=params, max_wait=READ_WAIT_S)
        except _Throttled as throttled:
            # Nothing is lost: the watermark stays where it is and the next poll asks again.
            raise ConnectorThrottled(str(throttled), wait_s=throttled.wait) from throttled
        body = (answer.get("payload") if v0 else answer) if isinstance(answer, dict) else None
        if status != 200 or not isinstance(body, dict):
            raise ConnectorError(f"Amazon refused {operation}: HTTP {status} {_amazon_errors(answer)}")
        if state is not None:
            until = _parse_iso(state.get("until"))
        else:
            # Amazon vouches for completeness up to its LastUpdatedBefore; orders after it come again next time.
            until = _parse_iso(body.get("LastUpdatedBefore" if v0 else "lastUpdatedBefore")) or now - ORDERS_SETTLE
            if since is not None and until is not None and until < since:
                until = since
        if v0:
            raws = body.get("Orders") or []
            following = body.get("NextToken")
            orders = [o for raw in raws if isinstance(raw, dict) and (o := self._order(api, raw)) is not None]
        else:
            raws = body.get("orders") or []
            pagination = body.get("pagination")
            following = pagination.get("nextToken") if isinstance(pagination, dict) else None
            orders = [o for raw in raws if isinstance(raw, dict) and (o := _searched_order(raw)) is not None]
        if following:
            cursor_next = json.dumps({"next": str(following), "after": after, "until": _iso(until) if until else ""})
            return OrdersPage(orders=orders, complete_until=None, next_cursor=cursor_next)
        return OrdersPage(orders=orders, complete_until=until)

    def orders_get(self, channel: ChannelRef, external_ids: Sequence[str]) -> list[PlatformOrder]:
        """Each order by ``getOrder`` (v0: and ``getOrderItems``). An order Amazon answers 404 for no longer
        exists there: CANCELLED without lines. Any other refusal leaves the order out (asked again later)."""
        api = _Api(channel)
        v0 = _orders_api(channel) == "v0"
        found: list[PlatformOrder] = []
        for order_id in list(dict.fromkeys(external_ids))[: self.orders_get_batch]:
            path = (
                f"/orders/v0/orders/{quote(order_id, safe='')}"
                if v0
                else f"/orders/{ORDERS_API_DEFAULT}/orders/{quote(order_id, safe='')}"
            )
            try:
                status, answer = api.call(
                    "getOrder",
                    "GET",
                    path,
                    params=None if v0 else {"includedData": "FULFILLMENT"},
                    max_wait=READ_WAIT_S,
                )
                if status == 404:
                    found.append(PlatformOrder(order_id, PlatformOrder.Status.CANCELLED, (), number=order_id))
                    continue
                body = (answer.get("payload") if v0 else answer.get("order")) if isinstance(answer, dict) else None
                if status != 200 or not isinstance(body, dict):
                    log.warning("amazon_order_unreadable", order=order_id, status=status, errors=_amazon_errors(answer))
                    continue
                order = self._order(api, body) if v0 else _searched_order(body)
            except (_Throttled, ConnectorThrottled) as throttled:
                if found:
                    break  # what was read is applied; the rest is asked again by the next sweep
                wait = throttled.wait if isinstance(throttled, _Throttled) else throttled.wait_s
                raise ConnectorThrottled(str(throttled), wait_s=wait) from throttled
            if order is not None and order.external_id == order_id:
                found.append(order)
        return found

    def _order(self, api: _Api, raw: Mapping[str, Any]) -> PlatformOrder | None:
        """A v0 ``Order`` with its items (``getOrderItems``); None for one Amazon fulfils (never the seller's stock)."""
        order_id = str(raw.get("AmazonOrderId") or "")
        if not order_id:
            raise ConnectorError("Amazon returned an order without AmazonOrderId.")
        if raw.get("FulfillmentChannel") == "AFN":
            log.warning("amazon_order_afn_skipped", order=order_id)
            return None
        amazon_status = str(raw.get("OrderStatus") or "")
        status = ORDER_STATUSES.get(amazon_status)
        if status is None:
            # An order state this connector does not know yet: hold its stock rather than oversell.
            log.warning("amazon_order_status_unknown", order=order_id, status=amazon_status)
            status = PlatformOrder.Status.PENDING
        updated = str(raw.get("LastUpdateDate") or "")
        # LastUpdateDate has whole seconds: the status and shipped counts tell two versions of one second apart.
        version = "|".join(
            [updated, amazon_status, str(raw.get("NumberOfItemsShipped")), str(raw.get("NumberOfItemsUnshipped"))]
        )
        return PlatformOrder(
            external_id=order_id,
            status=status,
            lines=self._order_lines(api, order_id, version),
            updated_at=_parse_iso(updated),
            number=order_id,
        )

    def _order_lines(self, api: _Api, order_id: str, version: str) -> tuple[OrderLine, ...]:
        """The order's items per seller SKU; cached per order version, so a page read again costs nothing."""
        digest = hashlib.sha256(version.encode()).hexdigest()[:16]
        key = redis_key("amazon", "items", api.seller_id, order_id, digest)
        cached = redis_client().get(key)
        if cached:
            rows = json.loads(cached)
        else:
            totals: dict[str, list[int]] = {}
            token: str | None = None
            while True:
                params = {"NextToken": token} if token else None
                try:
                    status, answer = api.call(
                        "getOrderItems",
                        "GET",
                        f"/orders/v0/orders/{quote(order_id, safe='')}/orderItems",
                        params=params,
                        max_wait=READ_WAIT_S,
                    )
                except _Throttled as throttled:
                    # The lines read so far stay cached: the next poll carries on from here.
                    raise ConnectorThrottled(str(throttled), wait_s=throttled.wait) from throttled
                payload = answer.get("payload") if isinstance(answer, dict) else None
                if status != 200 or not isinstance(payload, dict):
                    raise ConnectorError(
                        f"Amazon refused getOrderItems for {order_id}: HTTP {status} {_amazon_errors(answer)}"
                    )
                for item in payload.get("OrderItems") or []:
                    sku = str(item.get("SellerSKU") or "")
                    if not sku:
                        continue
                    row = totals.setdefault(sku, [0, 0])
                    row[0] += int(item.get("QuantityOrdered") or 0)
                    row[1] += int(item.get("QuantityShipped") or 0)
                token = payload.get("NextToken") or None
                if not token:
                    break
            rows = [[sku, ordered, shipped] for sku, (ordered, shipped) in totals.items()]
            redis_client().set(key, json.dumps(rows), ex=ORDER_LINES_TTL_S)
        return tuple(
            OrderLine(sku=sku, quantity=ordered, fulfilled=min(shipped, ordered), external_id=sku)
            for sku, ordered, shipped in rows
            if ordered > 0
        )

    # Going live: discover -----------------------------------------------------------------------

    def locations(self, channel: ChannelRef) -> list[PlatformLocation]:
        marketplace = str(channel.settings.get("marketplace_id") or "")
        if not marketplace:
            raise ConnectorError("The Amazon channel needs marketplace_id in its settings.")
        name = MARKETPLACE_NAMES.get(marketplace, f"Amazon marketplace {marketplace}")
        return [PlatformLocation(id=marketplace, name=f"{name} (merchant-fulfilled stock)")]

    def catalog(self, channel: ChannelRef, progress: Progress | None = None) -> Catalog:
        api = _Api(channel)
        reports = f"/reports/{REPORTS_API_VERSION}"
        body = {"reportType": LISTINGS_REPORT, "marketplaceIds": [api.marketplace_id]}
        status, answer = self._report_call(api, "createReport", "POST", f"{reports}/reports", body=body)
        report_id = answer.get("reportId") if isinstance(answer, dict) else None
        if status != 202 or not report_id:
            raise ConnectorError(f"Amazon refused createReport: HTTP {status} {_amazon_errors(answer)}")
        if progress is not None:
            progress(0, None)
        started = time.monotonic()
        for attempt in itertools.count():
            time.sleep(REPORT_POLL_S[min(attempt, len(REPORT_POLL_S) - 1)])
            path = f"{reports}/reports/{quote(str(report_id), safe='')}"
            status, report = self._report_call(api, "getReport", "GET", path)
            if status != 200 or not isinstance(report, dict):
                raise ConnectorError(f"Amazon refused getReport {report_id}: HTTP {status} {_amazon_errors(report)}")
            state = str(report.get("processingStatus") or "")
            if state == "DONE":
                break
            if state in ("FATAL", "CANCELLED"):
                raise ConnectorError(self._report_failure(api, str(report_id), state, report))
            if time.monotonic() - started > REPORT_GIVE_UP_S:
                raise ConnectorError(
                    f"Amazon's listings report {report_id} is still {state or 'unknown'} after "
                    f"{REPORT_GIVE_UP_S / 60:.0f} minutes; try again later."
                )
        text = self._report_text(api, str(report.get("reportDocumentId") or ""), "listings report")
        entries = _listing_entries(text, api.marketplace_id)
        if progress is not None:
            progress(len(entries), len(entries))
        return Catalog(entries=entries, requests=api.requests)

    def _report_call(self, api: _Api, operation: str, method: str, path: str, *, body: Any = None) -> tuple[int, Any]:
        """A Reports API call within its usage plan: waits for the operation's token (and after a 429, for
        the pause Amazon's rate implies), at most REPORT_WAIT_S at a time; beyond, ConnectorThrottled."""
        for attempt in range(REPORT_ATTEMPTS):
            try:
                return api.call(operation, method, path, body=body, max_wait=REPORT_WAIT_S)
            except _Throttled as throttled:
                if throttled.wait > REPORT_WAIT_S or attempt == REPORT_ATTEMPTS - 1:
                    raise ConnectorThrottled(str(throttled), wait_s=throttled.wait) from throttled
                time.sleep(throttled.wait)
        raise AssertionError("unreachable")

    def _report_text(self, api: _Api, document_id: str, what: str) -> str:
        if not document_id:
            raise ConnectorError(f"Amazon's {what} is done but names no document.")
        path = f"/reports/{REPORTS_API_VERSION}/documents/{quote(document_id, safe='')}"
        status, document = self._report_call(api, "getReportDocument", "GET", path)
        if status != 200 or not isinstance(document, dict) or not document.get("url"):
            raise ConnectorError(f"Amazon refused getReportDocument: HTTP {status} {_amazon_errors(document)}")
        return api.download_text(str(document["url"]), document.get("compressionAlgorithm"), what)

    def _report_failure(self, api: _Api, report_id: str, state: str, report: Mapping[str, Any]) -> str:
        if state == "CANCELLED":
            return (
                f"Amazon cancelled the listings report {report_id}: it does so when the seller has no listings in "
                f"marketplace {api.marketplace_id} (or when someone cancelled it). Nothing to link yet."
            )
        detail = ""
        if report.get("reportDocumentId"):
            try:  # the error document says why, when Amazon wrote one
                text = self._report_text(api, str(report["reportDocumentId"]), "report's error document")
                # Amazon's own reason (errorDetails) only: never another body shown to people.
                found = json.loads(text).get("errorDetails") if text.lstrip().startswith("{") else None
                detail = f": {str(found).strip()[:300]}" if found else ""
            except (ConnectorError, ValueError, AttributeError):
                detail = ""
        return (
            f"Amazon could not make the listings report {report_id} (FATAL{detail}); try again in a few minutes, "
            "and if it keeps failing, check the seller's listings in Seller Central."
        )

    def webhook_verify(self, channel: ChannelRef, headers: Mapping[str, str], body: bytes) -> Webhook | None:
        """Amazon sends notifications through Amazon SQS / EventBridge, not HTTP webhooks: orders are polled."""
        return None

    def test_connection(self, channel: ChannelRef) -> str:
        api = _Api(channel)
        api.access_token(fresh=True)
        try:
            status, answer = api.call(
                "getMarketplaceParticipations",
                "GET",
                f"/sellers/{SELLERS_API_VERSION}/marketplaceParticipations",
                max_wait=float(sync_setting("SYNC_INLINE_WAIT_S")),
            )
        except _Throttled as throttled:
            raise ConnectorThrottled(
                f"Amazon is rate limiting this seller right now: {throttled}.", wait_s=throttled.wait
            ) from throttled
        payload = answer.get("payload") if isinstance(answer, dict) else None
        if status != 200 or not isinstance(payload, list):
            raise ConnectorError(f"Amazon refused getMarketplaceParticipations: HTTP {status} {_amazon_errors(answer)}")
        names = []
        for entry in payload:
            marketplace = entry.get("marketplace") or {}
            names.append(f"{marketplace.get('id')} ({marketplace.get('domainName') or marketplace.get('name')})")
            if marketplace.get("id") != api.marketplace_id:
                continue
            if not (entry.get("participation") or {}).get("isParticipating"):
                raise ConnectorError(f"The seller is registered in {api.marketplace_id} but does not sell there now.")
            return (
                f"Connected to Amazon seller {api.seller_id}: store {entry.get('storeName')!r} on "
                f"{marketplace.get('domainName') or marketplace.get('name')} (marketplace {api.marketplace_id})."
            )
        raise ConnectorError(
            f"The authorized seller does not sell in marketplace {api.marketplace_id}; it sells in: "
            f"{', '.join(names) or 'none'}."
        )


# --- feeds waiting for their processing report --------------------------------------------------


class _FeedLedger:
    """Per channel in Redis: feeds submitted and not yet settled, and the SKUs a feed's report rejected."""

    def __init__(self, channel: ChannelRef) -> None:
        self.pending_key = redis_key("amazon", "feeds", channel.id)
        self.rejected_key = redis_key("amazon", "feed-rejected", channel.id)
        self.due_key = redis_key("amazon", "feeds-checked", channel.id)

    def submitted(self, feed_id: str, skus: Sequence[str]) -> None:
        client = redis_client()
        client.hset(self.pending_key, feed_id, json.dumps({"at": time.time(), "skus": list(skus)}))
        client.expire(self.pending_key, int(FEED_GIVE_UP_S * 2))

    def due(self, *, force: bool) -> bool:
        client = redis_client()
        if not client.hlen(self.pending_key):
            return False
        if force:
            return True
        return bool(client.set(self.due_key, "1", nx=True, px=int(FEED_CHECK_EVERY_S * 1000)))

    def pending(self) -> list[tuple[str, dict[str, Any]]]:
        records = [
            (k.decode() if isinstance(k, bytes) else str(k), json.loads(v))
            for k, v in redis_client().hgetall(self.pending_key).items()
        ]
        return sorted(records, key=lambda pair: float(pair[1]["at"]))

    def forget(self, feed_id: str) -> None:
        redis_client().hdel(self.pending_key, feed_id)

    def settled(self, feed_id: str, rejected: Mapping[str, str]) -> None:
        client = redis_client()
        if rejected:
            client.hset(self.rejected_key, mapping=dict(rejected))
            client.expire(self.rejected_key, FACTS_TTL_S)
        client.hdel(self.pending_key, feed_id)

    def rejected(self, skus: Sequence[str]) -> set[str]:
        if not skus:
            return set()
        values = redis_client().hmget(self.rejected_key, list(skus))
        return {sku for sku, value in zip(skus, values, strict=True) if value}

    def reasons(self) -> dict[str, str]:
        return {
            (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v))
            for k, v in redis_client().hgetall(self.rejected_key).items()
        }

    def clear(self, skus: Sequence[str]) -> None:
        if skus:
            redis_client().hdel(self.rejected_key, *skus)


def _issues_text(issues: Any) -> str:
    if not isinstance(issues, list) or not issues:
        return "no reason given"
    errors = [i for i in issues if isinstance(i, dict) and i.get("severity", "ERROR") == "ERROR"] or [
        i for i in issues if isinstance(i, dict)
    ]
    return "; ".join(f"{i.get('message', '')} [{i.get('code', '?')}]" for i in errors[:3])


def _listing_entries(text: str, marketplace_id: str) -> list[CatalogEntry]:
    """The merchant listings report (a header row, then tab-separated rows) as catalog entries; the
    columns are found by name. A listing fulfilled by Amazon is platform-managed and has no quantity here."""
    lines = text.splitlines()
    if not lines:
        return []
    header = [name.strip().lower() for name in lines[0].split("\t")]
    if "seller-sku" not in header:
        raise ConnectorError(f"Amazon's listings report has no seller-sku column (columns: {', '.join(header)[:200]}).")
    entries = []
    for line in lines[1:]:
        if not line.strip():
            continue
        row = dict(zip(header, line.split("\t"), strict=False))
        sku = (row.get("seller-sku") or "").strip()
        channel = (row.get("fulfillment-channel") or FULFILLMENT_CHANNEL).strip().upper() or FULFILLMENT_CHANNEL
        quantity = (row.get("quantity") or "").strip()
        managed = channel != FULFILLMENT_CHANNEL
        entries.append(
            CatalogEntry(
                sku=sku,
                external_id=sku,  # a listing is addressed by its seller SKU
                title=(row.get("item-name") or "").strip(),
                tracked=True,
                platform_managed=managed,
                quantities={marketplace_id: int(quantity)} if quantity.isdigit() and not managed else {},
            )
        )
    return entries


def _listings_version() -> str:
    return str(getattr(settings, "AMAZON_LISTINGS_API_VERSION", "2021-08-01"))


def _orders_api(channel: ChannelRef) -> str:
    """The channel's Orders API version: 2026-01-01 unless its settings fall back to v0."""
    version = str(channel.settings.get("orders_api") or ORDERS_API_DEFAULT)
    return version if version in ORDERS_API_VERSIONS else ORDERS_API_DEFAULT


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _searched_order(raw: Mapping[str, Any]) -> PlatformOrder | None:
    """An Orders 2026-01-01 ``Order`` (``searchOrders`` or ``getOrder`` with ``includedData=FULFILLMENT``): its
    ``orderItems`` come along, with ``product.sellerSku``, ``quantityOrdered`` and ``fulfillment.quantityFulfilled``.
    None for an order Amazon fulfils."""
    order_id = str(raw.get("orderId") or "")
    if not order_id:
        raise ConnectorError("Amazon returned an order without orderId.")
    fulfillment = _obj(raw.get("fulfillment"))
    if fulfillment.get("fulfilledBy") == "AMAZON":
        log.warning("amazon_order_afn_skipped", order=order_id)
        return None
    amazon_status = str(fulfillment.get("fulfillmentStatus") or "")
    status = FULFILLMENT_STATUSES.get(amazon_status)
    if status is None:
        # A state this connector does not know yet (or no fulfillment data): hold the stock rather than oversell.
        log.warning("amazon_order_status_unknown", order=order_id, status=amazon_status)
        status = PlatformOrder.Status.PENDING
    totals: dict[str, list[int]] = {}
    for item in raw.get("orderItems") or []:
        if not isinstance(item, dict):
            continue
        product = _obj(item.get("product"))
        sku = str(product.get("sellerSku") or "")
        if not sku:
            continue
        item_fulfillment = _obj(item.get("fulfillment"))
        ordered, shipped = item.get("quantityOrdered"), item_fulfillment.get("quantityFulfilled")
        row = totals.setdefault(sku, [0, 0])
        row[0] += ordered if isinstance(ordered, int) and not isinstance(ordered, bool) else 0
        row[1] += shipped if isinstance(shipped, int) and not isinstance(shipped, bool) else 0
    lines = tuple(
        OrderLine(sku=sku, quantity=ordered, fulfilled=max(0, min(shipped, ordered)), external_id=sku)
        for sku, (ordered, shipped) in totals.items()
        if ordered > 0
    )
    updated = raw.get("lastUpdatedTime")
    return PlatformOrder(
        external_id=order_id, status=status, lines=lines, updated_at=_parse_iso(updated), number=order_id
    )


def _push_budget() -> float:
    """How long one push may take: well inside the pusher's lock and its slice of the worker."""
    return 0.5 * min(float(sync_setting("SYNC_LOCK_TTL_S")), float(sync_setting("SYNC_PUSH_SLICE_S")))
