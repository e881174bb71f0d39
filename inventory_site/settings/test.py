"""The test suite: the same real PostgreSQL and Redis, quieter logs, fast hashing."""

import os
import secrets

# A test waits for servers and workers inside its test transaction, idle for seconds at a time: the
# suite's sessions get a long idle-in-transaction timeout (the tests of the timeout set their own).
os.environ.setdefault("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS", "300000")
# A request's statement timeout stays on its session, which the test's flush then uses: a long one.
os.environ.setdefault("DATABASE_WEB_STATEMENT_TIMEOUT_MS", "120000")
os.environ.setdefault("DATABASE_WEB_LOCK_TIMEOUT_MS", "120000")

from .base import *
from .base import ASYNC_PATHS, DATABASES, INSTALLED_APPS, SANDBOX_APPS, env

# The sandbox: platform fakes, the channel simulator and the demo with their commands (never in production).
INSTALLED_APPS = [*INSTALLED_APPS, *SANDBOX_APPS]
# The demo storefront's stream relay (a test serving sandbox.urls reaches it on the event loop).
ASYNC_PATHS = [*ASYNC_PATHS, "/demo/storefront/stream/"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOG_LEVEL = env("LOG_LEVEL", default="WARNING")
LOGGING = build_logging_config(level=LOG_LEVEL, fmt="console")
DATABASES["default"]["CONN_MAX_AGE"] = 0
# Each checkout (or parallel runner) may name its own test database.
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", default=f"test_{DATABASES['default']['NAME']}")}
# A Redis namespace of its own per run: a fresh test database gives out the same ids again, and
# counters or cache entries of the previous run must not meet them. Servers the tests start
# inherit it through the environment.
os.environ.setdefault("CACHE_KEY_PREFIX", f"stockroom-test-{secrets.token_hex(4)}")
# Celery's queues too: a `make run` on the same Redis must not take the tests' tasks (nor they its),
# and the workers the tests start inherit the prefix with the environment.
os.environ.setdefault("CELERY_KEY_PREFIX", f"{os.environ['CACHE_KEY_PREFIX']}-")
# Parallel runners (`make test TEST_JOBS=n`) inherit the run's prefixes: each takes a namespace of its
# own within them, as it has a test database of its own (pytest-django adds the runner's name to the
# test database's). Once: the workers and servers a runner starts inherit its prefixes and keep them.
_runner = os.environ.get("PYTEST_XDIST_WORKER", "")
if _runner and not os.environ["CACHE_KEY_PREFIX"].endswith(f"-{_runner}"):
    os.environ["CACHE_KEY_PREFIX"] = f"{os.environ['CACHE_KEY_PREFIX']}-{_runner}"
    os.environ["CELERY_KEY_PREFIX"] = f"{os.environ['CELERY_KEY_PREFIX']}{_runner}-"
CACHES["default"]["KEY_PREFIX"] = os.environ["CACHE_KEY_PREFIX"]
CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = os.environ["CELERY_KEY_PREFIX"]
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {"token": env("API_THROTTLE_RATE", default="100000/min")}
STOCKROOM_DEMO_MODE = False
# Static files from the app folders, as locally (no collectstatic before a test run).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
# The platform fakes and supplier servers run on this machine: outbound requests may reach loopback,
# and an Amazon channel may name the fake's endpoints.
STOCKROOM_OUTBOUND_ALLOW = env.list("STOCKROOM_OUTBOUND_ALLOW", default=["127.0.0.0/8", "::1"])
STOCKROOM_AMAZON_ENDPOINT_OVERRIDE = env.bool("STOCKROOM_AMAZON_ENDPOINT_OVERRIDE", default=True)
