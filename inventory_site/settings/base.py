"""Settings shared by every environment. Everything that differs comes from the environment."""

from __future__ import annotations

import importlib
import os
from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab

from apps.core.logging import build_logging_config
from inventory_site.stack import DATABASE_NAME, broker_url_for  # names only: settings resolve nothing

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()

# A local .env is honoured for developers; production reads the real environment.
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(str(BASE_DIR / ".env"))

SECRET_KEY = env("SECRET_KEY", default="insecure-local-only-key-change-me")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django_prometheus",
    "inventory_site.admin_site.StockroomAdminConfig",  # django.contrib.admin with the Stockroom site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "import_export",
    "apps.core",
    "apps.catalog",
    "apps.channels",
    "apps.orders",
    "apps.suppliers",
    "apps.forecasting",
    "apps.staff",
    "axes",
]
# Scaffolding for `make run`, the tests and the benchmarks, outside the product: the local and test
# settings add these apps, production never does (docs/architecture.md, "The sandbox").
SANDBOX_APPS = ["sandbox", "sandbox.demo"]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Outermost of ours: it sees every answer, Django's own 404 and 500 pages included.
    "apps.core.middleware.ApiErrorJsonMiddleware",
    "apps.core.middleware.RequestLogMiddleware",
    "apps.core.middleware.DatabaseUnavailableMiddleware",
    "apps.core.middleware.WebStatementTimeoutMiddleware",
    "apps.core.middleware.RequestGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's and the staff pages' CSS) from any server, gunicorn included.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a refused login into the lockout page.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "inventory_site.urls"
# Async paths whose synchronous middleware runs in one thread shared by the process instead of a thread
# per request kept for the request's whole life (an open stream would hold one each). A view here must
# never wait for another request of the same process while its middleware runs (the demo's relay, which
# asks this server for a stream, does: it stays out).
SHARED_THREAD_PATHS = ["/api/v1/availability/stream/"]
# Paths whose views are async, served on the web process's event loop (inventory_site/asgi.py).
ASYNC_PATHS = [*SHARED_THREAD_PATHS]
WSGI_APPLICATION = "inventory_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- PostgreSQL and Redis: read from the environment, nothing probed here ------------------
# Settings only read the environment: importing them opens no connection, so linters and tools
# run without servers. Finding servers (local ones, or starting the embedded default) is the
# stack command's work: `python -m inventory_site.stack exec -- CMD` (what `make run`, `make test`
# and `make bench` use) exports DATABASE_URL and REDIS_URL to CMD. Without them, the local
# default servers below are assumed.
DEFAULT_DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE_NAME}"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# `stack exec` also says where it found each one ("env", "local" or "embedded"), for /healthz.
_launched_from = dict(part.split("=", 1) for part in env("STOCKROOM_STACK", default="").split(",") if "=" in part)
DATABASE_URL = env("DATABASE_URL", default="") or DEFAULT_DATABASE_URL
DATABASE_SOURCE = _launched_from.get("database", "env" if os.environ.get("DATABASE_URL") else "default")
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
DATABASES["default"].update(
    {
        "CONN_MAX_AGE": env.int("DATABASE_CONN_MAX_AGE", default=60),
        # A dropped connection is noticed before use, so the service recovers by itself.
        "CONN_HEALTH_CHECKS": True,
        "ATOMIC_REQUESTS": False,
    }
)
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5))
# Hot-path statements run through apps.core.db.prepared_cursor and are prepared on first use;
# "none" turns that off (for a transaction-pooling proxy without prepared-statement support).
_prepare = env("DATABASE_PREPARE_THRESHOLD", default="0").strip().lower()
DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", None if _prepare == "none" else int(_prepare))
# Those statements take array parameters, for which PostgreSQL would otherwise keep planning each
# run anew (custom plans); their generic plans are as good. ORM queries are not prepared: unaffected.
_options = DATABASES["default"]["OPTIONS"]
if _prepare != "none":
    _options["options"] = f"{_options.get('options', '')} -c plan_cache_mode=force_generic_plan".strip()
# Bounded waits (docs/configuration.md). A session idle inside a transaction (its process hung, or cut
# off by the network) is ended by PostgreSQL after DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS, freeing its
# locks; keepalives and the TCP user timeout make both ends notice a dead peer in seconds, not after
# minutes of retransmission. libpq's options act on the client's socket, the `-c` ones on the server's.
# A host cut off by the network is noticed by the keepalives (about 11 s); the idle timeout is for a client
# that is alive but stuck, and leaves room for a worker's long transaction (a large feed's Python work
# between two of its statements).
DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS = env.int("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS", default=30000)
DATABASE_TCP_KEEPALIVES_IDLE_S = env.int("DATABASE_TCP_KEEPALIVES_IDLE_S", default=5)
DATABASE_TCP_KEEPALIVES_INTERVAL_S = env.int("DATABASE_TCP_KEEPALIVES_INTERVAL_S", default=2)
DATABASE_TCP_KEEPALIVES_COUNT = env.int("DATABASE_TCP_KEEPALIVES_COUNT", default=3)
DATABASE_TCP_USER_TIMEOUT_MS = env.int("DATABASE_TCP_USER_TIMEOUT_MS", default=10000)
# Web requests only (apps.core.middleware.WebStatementTimeoutMiddleware): one statement of a request,
# lock waits included, runs at most this long, then the request answers 503 statement_timeout.
# Workers' long jobs (imports, sweeps, reconciliations) are not bounded by it. 0 turns it off.
DATABASE_WEB_STATEMENT_TIMEOUT_MS = env.int("DATABASE_WEB_STATEMENT_TIMEOUT_MS", default=15000)
# Web requests only: a wait for a row lock ends after this long (503 statement_timeout, retry with the same
# key). A session cut off while holding stock levels keeps them until the keepalives end it (about 11 s);
# without this, requests for those items would hold every web thread that long and stop all order-taking.
DATABASE_WEB_LOCK_TIMEOUT_MS = env.int("DATABASE_WEB_LOCK_TIMEOUT_MS", default=2000)
_options.setdefault("keepalives", 1)
_options.setdefault("keepalives_idle", DATABASE_TCP_KEEPALIVES_IDLE_S)
_options.setdefault("keepalives_interval", DATABASE_TCP_KEEPALIVES_INTERVAL_S)
_options.setdefault("keepalives_count", DATABASE_TCP_KEEPALIVES_COUNT)
_options.setdefault("tcp_user_timeout", DATABASE_TCP_USER_TIMEOUT_MS)
_options["options"] = " ".join(
    [
        _options.get("options", ""),
        f"-c idle_in_transaction_session_timeout={DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS}",
        f"-c tcp_keepalives_idle={DATABASE_TCP_KEEPALIVES_IDLE_S}",
        f"-c tcp_keepalives_interval={DATABASE_TCP_KEEPALIVES_INTERVAL_S}",
        f"-c tcp_keepalives_count={DATABASE_TCP_KEEPALIVES_COUNT}",
        f"-c tcp_user_timeout={DATABASE_TCP_USER_TIMEOUT_MS}",
    ]
).strip()
if DATABASES["default"].get("NAME", "").startswith("/"):  # socket URL without a path database
    DATABASES["default"]["NAME"] = DATABASE_NAME

REDIS_URL = env("REDIS_URL", default="") or DEFAULT_REDIS_URL
REDIS_SOURCE = _launched_from.get("redis", "env" if os.environ.get("REDIS_URL") else "default")

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="stockroom"),
        "TIMEOUT": 300,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": 0.5,
            "SOCKET_TIMEOUT": 0.5,
            # Every Redis call of a process goes through a circuit breaker (apps.core.redis_breaker).
            "CONNECTION_FACTORY": "apps.core.redis_breaker.BreakerConnectionFactory",
            # Redis is a cache here: when it is down, reads fall through to PostgreSQL.
            "IGNORE_EXCEPTIONS": True,
        },
    }
}
DJANGO_REDIS_IGNORE_EXCEPTIONS = True
# After this many consecutive Redis timeouts or refusals a process stops calling Redis for
# REDIS_BREAKER_OPEN_S seconds (calls fail at once and degrade), then lets one call through as a trial.
REDIS_BREAKER_FAILURES = env.int("REDIS_BREAKER_FAILURES", default=2)
REDIS_BREAKER_OPEN_S = env.float("REDIS_BREAKER_OPEN_S", default=5.0)
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
DJANGO_REDIS_LOGGER = "stockroom.cache"

SESSION_ENGINE = "django.contrib.sessions.backends.db"

# --- Login throttling (django-axes) on /admin/ and /staff/ ---------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# After this many failed logins for one username, or from one address, that login is locked
# for the cool-off; an admin lifts it early (Axes > Access attempts, or `manage.py axes_reset`).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "apps.core.throttling.client_address"
# Proxies in front of the web server that append to X-Forwarded-For: 0 (default) trusts only
# the connection's address, so a client cannot choose its own by sending the header.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
FIXTURE_DIRS = [BASE_DIR / "fixtures"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "/staff/login/"
LOGIN_REDIRECT_URL = "/staff/"

VAR_DIR = Path(env("STOCKROOM_VAR_DIR", default=str(BASE_DIR / "var")))

# --- Request limits -----------------------------------------------------------------------
# Larger bodies are refused with 413 before anything reads them (2.5 MiB by default: a webhook
# of ~20,000 stock rows; file feeds of any size come over SFTP or a folder, not HTTP).
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=2_621_440)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# --- REST API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    # JSON only, parsed strictly (apps/core/parsers.py); errors always JSON (no browsable pages).
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.core.authentication.ApiTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["apps.core.permissions.IsStaffToken"],
    "DEFAULT_THROTTLE_CLASSES": ["apps.core.throttling.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"token": env("API_THROTTLE_RATE", default="6000/min")},
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=50),
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "apps.core.api.schema.StockroomAutoSchema",
    "EXCEPTION_HANDLER": "apps.core.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
# Invalid API tokens per client address: past the limit within the window, 429 until it ends.
API_TOKEN_FAILURE_LIMIT = env.int("API_TOKEN_FAILURE_LIMIT", default=20)
API_TOKEN_FAILURE_WINDOW = env.int("API_TOKEN_FAILURE_WINDOW", default=300)
# /metrics: with a token set, only `Authorization: Bearer <token>` (or a staff session) reads it;
# without one, METRICS_PUBLIC decides. The API schema and docs: public, or staff only.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_PUBLIC = env.bool("METRICS_PUBLIC", default=True)
API_DOCS_PUBLIC = env.bool("API_DOCS_PUBLIC", default=True)
# How long a process remembers a token it read (a revocation reaches other processes within this).
API_TOKEN_CACHE_SECONDS = env.float("API_TOKEN_CACHE_SECONDS", default=2.0)
SPECTACULAR_SETTINGS = {
    "TITLE": "Stockroom API",
    "DESCRIPTION": "One truth about stock: availability, reservations and orders for channels; "
    "catalog, stock and suppliers for staff. Authenticate with `Authorization: Token <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # API_DOCS_PUBLIC=0: the schema and docs only for a staff session or a staff token.
    "SERVE_AUTHENTICATION": [
        "rest_framework.authentication.SessionAuthentication",
        "apps.core.authentication.ApiTokenAuthentication",
    ],
    "SERVE_PERMISSIONS": ["apps.core.permissions.ApiDocsAccess"],
}

# --- Celery -------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=broker_url_for(REDIS_URL))
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A message a worker took (acknowledged late, when its task ends) goes back on its queue once it has
# not been renewed for BROKER_VISIBILITY_TIMEOUT_S: live workers renew theirs every
# BROKER_VISIBILITY_RENEW_S (apps.core.broker), so a dead worker's messages come back within the
# timeout plus one restore scan (BROKER_RESTORE_EVERY_S), however long a task runs (docs/scaling.md).
_broker_visibility_timeout_s = env.int("BROKER_VISIBILITY_TIMEOUT_S", default=60)
_broker_visibility_renew_s = env.float("BROKER_VISIBILITY_RENEW_S", default=10.0)
_broker_restore_every_s = env.int("BROKER_RESTORE_EVERY_S", default=10)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": _broker_visibility_timeout_s,
    # Every worker scans for messages past the timeout this often (kombu's default: every 100 s).
    "unacked_restore_interval": _broker_restore_every_s,
    "unacked_restore_throttle": 1,
    # A worker killed inside that scan holds its mutex until it expires: short, not kombu's 5 minutes.
    "unacked_mutex_expire": 30,
    "socket_connect_timeout": 1,
    "socket_timeout": 5,
    "global_keyprefix": env("CELERY_KEY_PREFIX", default=""),
}
# django-celery-beat's database scheduler behind a PostgreSQL lock (apps.core.beat): run beat on two
# hosts, one sends, the other takes over within BEAT_STANDBY_POLL_S of the leader's session ending.
CELERY_BEAT_SCHEDULER = "apps.core.beat:LeaderScheduler"
CELERY_BEAT_SYNC_EVERY = 1  # each sent task's last run is in the database at once, for a standby taking over
BEAT_STANDBY_POLL_S = env.float("BEAT_STANDBY_POLL_S", default=5.0)
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ALWAYS_EAGER = False
# Fixed jobs, declared by each app in its `schedules.py` as BEAT_SCHEDULE; per-supplier
# polling jobs are created from the supplier records instead.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}
for _app in ("core", "catalog", "channels", "orders", "suppliers", "forecasting", "staff"):
    try:
        CELERY_BEAT_SCHEDULE.update(importlib.import_module(f"apps.{_app}.schedules").BEAT_SCHEDULE)
    except ModuleNotFoundError as _missing:
        if _missing.name != f"apps.{_app}.schedules":
            raise
# A feed run that has not moved its heartbeat for this long, with no live poll of its supplier,
# lost its worker: a beat job marks it abandoned and polls the supplier again.
FEED_RUN_STALE_S = env.int("FEED_RUN_STALE_S", default=300)
# Supplier feeds over these limits are refused whole, before parsing (docs/security.md, "Limits of supplier feeds").
FEED_MAX_BYTES = env.int("FEED_MAX_BYTES", default=200 * 1024 * 1024)
FEED_MAX_LINE_BYTES = env.int("FEED_MAX_LINE_BYTES", default=64 * 1024)
FEED_MAX_COLUMNS = env.int("FEED_MAX_COLUMNS", default=256)
# Folder suppliers read and move files only below this folder.
STOCKROOM_DROP_ROOT = Path(env("STOCKROOM_DROP_ROOT", default=str(VAR_DIR / "drop")))

# --- Domain settings ------------------------------------------------------------------
STOCKROOM = {
    "BROKER_VISIBILITY_TIMEOUT_S": _broker_visibility_timeout_s,
    "BROKER_VISIBILITY_RENEW_S": _broker_visibility_renew_s,
    "BROKER_RESTORE_EVERY_S": _broker_restore_every_s,
    "HOLD_MINUTES_DEFAULT": env.int("HOLD_MINUTES_DEFAULT", default=15),
    "SYNC_SHARDS": env.int("SYNC_SHARDS", default=2),
    "AVAILABILITY_CACHE_SECONDS": env.int("AVAILABILITY_CACHE_SECONDS", default=30),
    "IDEMPOTENCY_TTL": timedelta(days=env.int("IDEMPOTENCY_TTL_DAYS", default=7)),
    # A platform's orders are polled from the order watermark minus this much (orders are idempotent).
    "ORDERS_POLL_OVERLAP_S": env.int("ORDERS_POLL_OVERLAP_S", default=300),
    # The order truth sweep re-reads from its platform every open imported order the platform has not
    # shown for ORDERS_SWEEP_AGE_S (at most ORDERS_SWEEP_MAX per channel and run), every ORDERS_SWEEP_EVERY_S.
    "ORDERS_SWEEP_AGE_S": env.int("ORDERS_SWEEP_AGE_S", default=600),
    "ORDERS_SWEEP_EVERY_S": env.int("ORDERS_SWEEP_EVERY_S", default=300),
    "ORDERS_SWEEP_MAX": env.int("ORDERS_SWEEP_MAX", default=2000),
    # Lapsed holds are released every HOLD_EXPIRY_EVERY_S, HOLD_EXPIRY_BATCH orders per transaction, for at
    # most HOLD_EXPIRY_BUDGET_S per run (one run at a time): a hold is released within a minute of its expiry.
    "HOLD_EXPIRY_EVERY_S": env.int("HOLD_EXPIRY_EVERY_S", default=15),
    "HOLD_EXPIRY_BATCH": env.int("HOLD_EXPIRY_BATCH", default=50),
    "HOLD_EXPIRY_BUDGET_S": env.int("HOLD_EXPIRY_BUDGET_S", default=40),
    # --- Channel sync (apps.channels.conf.sync_setting reads these) ---
    # Tier 1 work younger than this waits for company unless a full batch is there: a sale
    # burst becomes one request instead of one per sale, at a fraction of the seconds allowed.
    "SYNC_TIER1_GATHER_S": env.float("SYNC_TIER1_GATHER_S", default=0.3),
    # Tier 2 changes wait this long so that a burst of adjustments goes out as one push.
    "SYNC_TIER2_DELAY_S": env.float("SYNC_TIER2_DELAY_S", default=2.0),
    # A channel's queued push task keeps further kicks from queueing another for this long (after its
    # countdown); a task held by a worker cut off from the network stops blocking after it, and the
    # sweep queues one that a live worker runs (the pusher lock keeps one pusher at a time).
    "SYNC_KICK_CLAIM_S": env.float("SYNC_KICK_CLAIM_S", default=15.0),
    # Tier 3 changes are batched: pushed once their oldest change is this old (beat sweep).
    "SYNC_TIER3_BATCH_S": env.float("SYNC_TIER3_BATCH_S", default=60.0),
    # A push is tried this often before its work becomes a dead letter, backing off exponentially.
    "SYNC_MAX_ATTEMPTS": env.int("SYNC_MAX_ATTEMPTS", default=8),
    "SYNC_BACKOFF_BASE_S": env.float("SYNC_BACKOFF_BASE_S", default=2.0),
    "SYNC_BACKOFF_MAX_S": env.float("SYNC_BACKOFF_MAX_S", default=300.0),
    # One pusher per channel: its holder renews the lock every SYNC_LOCK_RENEW_S while it pushes (however
    # long a platform takes to answer), so the lock of a worker that died lapses within SYNC_LOCK_TTL_S.
    "SYNC_LOCK_TTL_S": env.float("SYNC_LOCK_TTL_S", default=10.0),
    "SYNC_LOCK_RENEW_S": env.float("SYNC_LOCK_RENEW_S", default=3.0),
    # A pusher gives its worker slot back after this long and queues a follow-up for the rest.
    "SYNC_PUSH_SLICE_S": env.float("SYNC_PUSH_SLICE_S", default=20.0),
    # Waits for a token or a Retry-After up to this long happen inline; longer ones are rescheduled.
    "SYNC_INLINE_WAIT_S": env.float("SYNC_INLINE_WAIT_S", default=3.0),
    "SYNC_HTTP_TIMEOUT_S": env.float("SYNC_HTTP_TIMEOUT_S", default=10.0),
    # While a channel's platform fails as a whole, it is tried again at least this often (its rows'
    # backoff is capped here, and a channel whose work all died gets one probe push this often), so
    # every listing is right within about this long of the platform answering again.
    "SYNC_PROBE_S": env.float("SYNC_PROBE_S", default=15.0),
    # Pushes run at this share of the channel's rate and burst, so jitter never trips its limit.
    "SYNC_RATE_MARGIN": env.float("SYNC_RATE_MARGIN", default=0.9),
    # Held raises (orders not imported yet) are looked at again this often.
    "SYNC_HOLD_RECHECK_S": env.float("SYNC_HOLD_RECHECK_S", default=30.0),
    "SYNC_RECONCILE_PAGE": env.int("SYNC_RECONCILE_PAGE", default=100),
    # 1: drop pending work whose quantity equals what the channel was last told (saves updates,
    # not requests: batches are one request either way). Off by default: every dirty listing
    # gets a fresh absolute push, which also heals a channel that lost an update.
    "SYNC_SKIP_UNCHANGED": env.int("SYNC_SKIP_UNCHANGED", default=0),
    # Beat: the sweep (tier 3 batches, tier 2 backstops, retries) and reconciliation (read back, repair).
    "SYNC_SWEEP_EVERY_S": env.float("SYNC_SWEEP_EVERY_S", default=10.0),
    "SYNC_RECONCILE_EVERY_S": env.float("SYNC_RECONCILE_EVERY_S", default=15 * 60.0),
    # Beat: stock at or below its safety level is looked for this often (each item and location mailed once).
    "LOW_STOCK_SCAN_SECONDS": env.float("LOW_STOCK_SCAN_SECONDS", default=600.0),
    # Beat: the nightly forecast rebuild, at this hour and minute (TIME_ZONE), when stores are closed.
    "SAFETY_RECOMPUTE_HOUR": env("SAFETY_RECOMPUTE_HOUR", default="2"),
    "SAFETY_RECOMPUTE_MINUTE": env("SAFETY_RECOMPUTE_MINUTE", default="15"),
    # Beat: the worker logs its one-line `summary` of the business this often (the window it counts); 0: never.
    "ACTIVITY_SUMMARY_SECONDS": env.float("ACTIVITY_SUMMARY_SECONDS", default=60.0),
    # --- The availability stream (docs/stream.md) ---
    # A comment line this often keeps an idle stream open through proxies and tells the client it lives.
    "STREAM_HEARTBEAT_SECONDS": env.float("STREAM_HEARTBEAT_SECONDS", default=15.0),
    # A stream ends after this long (the client reconnects with its Last-Event-ID and misses nothing), so
    # that no stream outlives its client for long, whatever the network did to the connection.
    "STREAM_MAX_SECONDS": env.float("STREAM_MAX_SECONDS", default=900.0),
    # Events kept per channel for reconnects (Last-Event-ID); a client further behind gets a snapshot.
    "STREAM_BACKLOG": env.int("STREAM_BACKLOG", default=10000),
    # Under load, each web process reads and publishes a channel's changes at most this often and writes
    # what gathered to each stream in one piece (one read, one write for many changes); idle, a change goes
    # out at once. Adds at most twice this to an event's way under load.
    "STREAM_BATCH_SECONDS": env.float("STREAM_BATCH_SECONDS", default=0.25),
    # SKUs one stream may name; a storefront that wants more opens the stream without `sku` (all listings).
    "STREAM_MAX_SKUS": env.int("STREAM_MAX_SKUS", default=100),
    # Beat: channels with open streams are read again this often, so a state that changes without a
    # stock move (a push settled, the order import caught up, a supplier feed aged) reaches their streams.
    "STREAM_REFRESH_EVERY_S": env.float("STREAM_REFRESH_EVERY_S", default=5.0),
}
CELERY_BEAT_SCHEDULE["orders-holds-release-expired"]["schedule"] = float(STOCKROOM["HOLD_EXPIRY_EVERY_S"])
_hold_expiry = CELERY_BEAT_SCHEDULE["orders-holds-release-expired"]
_hold_expiry["options"] = {"expires": max(STOCKROOM["HOLD_EXPIRY_EVERY_S"] - 1, 1)}
CELERY_BEAT_SCHEDULE["orders-platform-orders-sweep"]["schedule"] = float(STOCKROOM["ORDERS_SWEEP_EVERY_S"])
CELERY_BEAT_SCHEDULE["channels-sync-sweep"]["schedule"] = STOCKROOM["SYNC_SWEEP_EVERY_S"]
CELERY_BEAT_SCHEDULE["channels-reconcile"]["schedule"] = STOCKROOM["SYNC_RECONCILE_EVERY_S"]
CELERY_BEAT_SCHEDULE["channels-stream-refresh"]["schedule"] = STOCKROOM["STREAM_REFRESH_EVERY_S"]
CELERY_BEAT_SCHEDULE["staff-low-stock-scan"]["schedule"] = STOCKROOM["LOW_STOCK_SCAN_SECONDS"]
CELERY_BEAT_SCHEDULE["staff-low-stock-scan"]["options"] = {"expires": STOCKROOM["LOW_STOCK_SCAN_SECONDS"] / 2}
if STOCKROOM["ACTIVITY_SUMMARY_SECONDS"] > 0:
    _summary = CELERY_BEAT_SCHEDULE["staff-activity-summary"]
    _summary["schedule"] = STOCKROOM["ACTIVITY_SUMMARY_SECONDS"]
    _summary["kwargs"] = {"window_s": int(STOCKROOM["ACTIVITY_SUMMARY_SECONDS"])}
    _summary["options"] = {"expires": STOCKROOM["ACTIVITY_SUMMARY_SECONDS"] / 2}
else:
    del CELERY_BEAT_SCHEDULE["staff-activity-summary"]
CELERY_BEAT_SCHEDULE["forecasting-safety-recompute"]["schedule"] = crontab(
    minute=STOCKROOM["SAFETY_RECOMPUTE_MINUTE"], hour=STOCKROOM["SAFETY_RECOMPUTE_HOUR"]
)
# --- E-mail: incident and low-stock notifications --------------------------------------
# EMAIL_URL: smtp://user:password@host:587/?tls=True (or smtp+tls://, smtp+ssl://); by default
# mails are printed on the console (the worker's log).
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Stockroom <stockroom@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Links in mails start with this (where staff open Stockroom).
STOCKROOM_BASE_URL = env("STOCKROOM_BASE_URL", default="http://127.0.0.1:8000")
# Where platforms reach Stockroom from the internet (https://stock.example.com): going live subscribes the
# platform's order webhooks to {STOCKROOM_PUBLIC_URL}/api/v1/channels/<code>/webhooks/<connector>/. Empty:
# go-live refuses to subscribe (local settings default to the dev server).
STOCKROOM_PUBLIC_URL = env("STOCKROOM_PUBLIC_URL", default="")

# --- Channel connectors: platform API versions (pinned) and the key of stored credentials ---
# Credentials of platform channels are stored encrypted (Fernet). Production must set the key
# (``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``);
# elsewhere it is derived from SECRET_KEY so that a local run needs nothing.
STOCKROOM_SECRETS_KEY = env("STOCKROOM_SECRETS_KEY", default="")
STOCKROOM_SECRETS_KEY_REQUIRED = False  # production: True
SHOPIFY_API_VERSION = env("SHOPIFY_API_VERSION", default="2026-07")
WOOCOMMERCE_API_VERSION = env("WOOCOMMERCE_API_VERSION", default="wc/v3")

# --- Outbound requests (apps.core.outbound): hosts or networks (CIDR) an outbound request may reach
# although they are loopback, private, link-local or reserved. None here and in production; the
# local settings and the tests allow loopback, where the platform fakes run.
STOCKROOM_OUTBOUND_ALLOW = env.list("STOCKROOM_OUTBOUND_ALLOW", default=[])
# Whether an Amazon channel may name its own SP-API endpoint and token URL (the fakes); otherwise only
# Amazon's own hosts are accepted.
STOCKROOM_AMAZON_ENDPOINT_OVERRIDE = env.bool("STOCKROOM_AMAZON_ENDPOINT_OVERRIDE", default=False)
AMAZON_LISTINGS_API_VERSION = env("AMAZON_LISTINGS_API_VERSION", default="2021-08-01")

# The local setup creates an admin account and loads the demo; production never does.
STOCKROOM_LOCAL_BOOTSTRAP = False
# `make run`: the port the web server listens on (the Procfile reads it too) and the local admin the
# bootstrap creates when STOCKROOM_LOCAL_BOOTSTRAP is on.
STOCKROOM_PORT = env.int("STOCKROOM_PORT", default=8000)
STOCKROOM_ADMIN_USER = env("STOCKROOM_ADMIN_USER", default="admin")
STOCKROOM_ADMIN_PASSWORD = env("STOCKROOM_ADMIN_PASSWORD", default="stockroom")
STOCKROOM_DEMO_MODE = env.bool("STOCKROOM_DEMO_MODE", default=False)

# --- Logging: one JSON line per request and per task ------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOG_FORMAT = env("LOG_FORMAT", default="json")  # json | console
LOGGING = build_logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT)
