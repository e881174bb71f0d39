"""Secrets kept in the database (a channel platform's credentials), encrypted at rest with Fernet.

The key is ``STOCKROOM_SECRETS_KEY``: one Fernet key, or several separated by commas to rotate
(the first encrypts, every one decrypts; re-save the records, then drop the old key). Where it is
empty and not required (a local run, the tests), a key is derived from ``SECRET_KEY`` so that
nothing needs setting up; production requires it (``STOCKROOM_SECRETS_KEY_REQUIRED``), and the
system check ``core.E010`` refuses to start without it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SecretsUnreadable(Exception):
    """Stored secrets that no configured key opens (the key changed without a rotation), or garbage."""


def derived_key(secret_key: str) -> bytes:
    """A Fernet key from Django's SECRET_KEY, for setups that give no key of their own."""
    digest = hashlib.sha256(b"stockroom.secrets\x00" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest)


def configured_keys() -> list[str]:
    """The keys from settings, in order; raises ImproperlyConfigured when one is not a Fernet key."""
    raw = str(getattr(settings, "STOCKROOM_SECRETS_KEY", "") or "")
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    for index, key in enumerate(keys):
        try:
            Fernet(key)
        except (ValueError, TypeError) as err:
            raise ImproperlyConfigured(
                f"STOCKROOM_SECRETS_KEY: key {index + 1} is not a Fernet key (32 url-safe base64-encoded bytes)."
            ) from err
    return keys


@lru_cache(maxsize=4)
def _fernet(raw: str, secret_key: str, required: bool) -> MultiFernet:
    keys = configured_keys()
    if not keys:
        if required:
            raise ImproperlyConfigured(
                "STOCKROOM_SECRETS_KEY is required here: it encrypts channel credentials at rest. Generate one with "
                '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`.'
            )
        return MultiFernet([Fernet(derived_key(secret_key))])
    return MultiFernet([Fernet(key) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(
        str(getattr(settings, "STOCKROOM_SECRETS_KEY", "") or ""),
        str(settings.SECRET_KEY),
        bool(getattr(settings, "STOCKROOM_SECRETS_KEY_REQUIRED", False)),
    )


def encrypt_json(values: Mapping[str, Any]) -> str:
    """A JSON object as an encrypted token (text, safe to store); an empty object is stored as ""."""
    if not values:
        return ""
    return fernet().encrypt(json.dumps(dict(values), sort_keys=True, separators=(",", ":")).encode()).decode()


def decrypt_json(token: str) -> dict[str, Any]:
    """The JSON object an ``encrypt_json`` token holds ("" is the empty object)."""
    if not token:
        return {}
    try:
        value = json.loads(fernet().decrypt(token.encode()))
    except (InvalidToken, ValueError) as err:
        raise SecretsUnreadable("Stored secrets cannot be decrypted with STOCKROOM_SECRETS_KEY.") from err
    if not isinstance(value, dict):
        raise SecretsUnreadable("Stored secrets are not a JSON object.")
    return value
