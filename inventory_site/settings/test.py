"""The test suite: the same real PostgreSQL and Redis, quieter logs, fast hashing."""

from .base import *
from .base import DATABASES, env

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOG_LEVEL = env("LOG_LEVEL", default="WARNING")
LOGGING = build_logging_config(level=LOG_LEVEL, fmt="console")
DATABASES["default"]["CONN_MAX_AGE"] = 0
# Each checkout (or parallel runner) may name its own test database.
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", default=f"test_{DATABASES['default']['NAME']}")}
CACHES["default"]["KEY_PREFIX"] = env("CACHE_KEY_PREFIX", default="stockroom-test")
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {"token": env("API_THROTTLE_RATE", default="100000/min")}
STOCKROOM_DEMO_MODE = False
