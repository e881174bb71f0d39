"""Production: everything from the environment, nothing created behind the operator's back."""

from .base import *
from .base import env

SECRET_KEY = env("SECRET_KEY")
DEBUG = False
STOCKROOM_LOCAL_BOOTSTRAP = False
STOCKROOM_DEMO_MODE = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
