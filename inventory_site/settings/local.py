"""A developer's machine: `make run`. Creates a local admin and runs the demo."""

from .base import *
from .base import ASYNC_PATHS, INSTALLED_APPS, SANDBOX_APPS, env

# The sandbox: platform fakes, the channel simulator and the demo with their commands (never in production).
INSTALLED_APPS = [*INSTALLED_APPS, *SANDBOX_APPS]
# The demo's storefront page (/demo/storefront/) beside the product's URLs; its stream relay is async.
ROOT_URLCONF = "sandbox.urls"
ASYNC_PATHS = [*ASYNC_PATHS, "/demo/storefront/stream/"]
DEBUG = env.bool("DEBUG", default=True)
LOG_FORMAT = env("LOG_FORMAT", default="console")
LOGGING = build_logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT)
STOCKROOM_LOCAL_BOOTSTRAP = True
# Platform webhooks of a local go-live point at the dev server (a tunnel's URL when a real platform must reach it).
STOCKROOM_PUBLIC_URL = env("STOCKROOM_PUBLIC_URL", default="http://127.0.0.1:8000")
STOCKROOM_DEMO_MODE = env.bool("STOCKROOM_DEMO_MODE", default=True)
# Static files (admin and staff CSS) straight from the app folders under gunicorn: no collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
# The platform fakes and supplier servers run on this machine: outbound requests may reach loopback,
# and an Amazon channel may name the fake's endpoints.
STOCKROOM_OUTBOUND_ALLOW = env.list("STOCKROOM_OUTBOUND_ALLOW", default=["127.0.0.0/8", "::1"])
STOCKROOM_AMAZON_ENDPOINT_OVERRIDE = env.bool("STOCKROOM_AMAZON_ENDPOINT_OVERRIDE", default=True)
