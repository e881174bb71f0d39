"""System checks of Stockroom's own settings (``manage.py check``, and every command that runs checks)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from apps.core.secrets import configured_keys


@checks.register(checks.Tags.security)
def secrets_key_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Channel credentials are encrypted with STOCKROOM_SECRETS_KEY: required where the settings say so
    (production), and always a real Fernet key when given."""
    try:
        keys = configured_keys()
    except ImproperlyConfigured as err:
        return [checks.Error(str(err), id="core.E011")]
    if not keys and getattr(settings, "STOCKROOM_SECRETS_KEY_REQUIRED", False):
        return [
            checks.Error(
                "STOCKROOM_SECRETS_KEY is not set: channel credentials cannot be stored encrypted.",
                hint='Generate one with `python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"` and set it in the environment; keep it with your backups.',
                id="core.E010",
            )
        ]
    return []
