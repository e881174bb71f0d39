"""Production: everything from the environment, nothing created behind the operator's back."""

from .base import *
from .base import env

# No sandbox here: the platform fakes, the channel simulator and the demo (sandbox/) are installed by
# the local and test settings only, and the image leaves their folder out (.dockerignore).

SECRET_KEY = env("SECRET_KEY")
DEBUG = False
STOCKROOM_LOCAL_BOOTSTRAP = False
STOCKROOM_DEMO_MODE = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)

# Closed by default: metrics need METRICS_TOKEN (or a staff session), the API docs a staff login.
METRICS_PUBLIC = env.bool("METRICS_PUBLIC", default=False)
API_DOCS_PUBLIC = env.bool("API_DOCS_PUBLIC", default=False)

# HTTPS only (`manage.py check --deploy` is clean). The TLS proxy in front sets X-Forwarded-Proto.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# Probes and scrapers inside the network speak plain HTTP to the web server directly.
SECURE_REDIRECT_EXEMPT = [r"^healthz(/ready|/live)?$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True

# Stored secrets are encrypted with STOCKROOM_SECRETS_KEY; production never derives the key from
# SECRET_KEY (system check core.E010 stops `migrate`, `check --deploy` and the other commands without it).
STOCKROOM_SECRETS_KEY_REQUIRED = True

# Outbound requests reach public addresses only, unless the operator names a host or network here;
# Amazon channels talk to Amazon's own endpoints.
STOCKROOM_OUTBOUND_ALLOW = env.list("STOCKROOM_OUTBOUND_ALLOW", default=[])
STOCKROOM_AMAZON_ENDPOINT_OVERRIDE = False
