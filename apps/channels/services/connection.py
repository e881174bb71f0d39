"""A channel's connector: the one place that builds what a connector sees, validates its configuration,
and tests the connection for the merchant.

Credentials are decrypted only here (``channel_ref``) and encrypted only in the configuration
services (``services.config``), through ``connector_config_clean``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from apps.catalog.services.incidents import incident_secret_unreadable
from apps.channels.connectors import connector_named
from apps.channels.connectors.base import ChannelRef, Connector, ConnectorError
from apps.channels.models import Channel
from apps.core.errors import CredentialsRequired, InvalidValue
from apps.core.redaction import secrets_remember
from apps.core.secrets import SecretsUnreadable, decrypt_json, secret_value

log = structlog.get_logger("stockroom.channels")


class ConnectorConfigInvalid(InvalidValue):
    """Settings or credentials the channel's connector refuses; ``errors`` has one entry per field."""

    default_detail = "The connector's settings or credentials are not valid."


def _destination(value: Any) -> str:
    return str(value or "").strip().rstrip("/").lower()


def credentials_rebind_check(
    *,
    connector: str,
    stored_settings: Mapping[str, Any],
    settings: Mapping[str, Any],
    stored_credentials: Mapping[str, Any],
    credentials: Mapping[str, Any] | None,
) -> None:
    """Refuse (CredentialsRequired) a change of a setting that decides where the stored credentials go (Shopify
    ``shop_url``, WooCommerce ``store_url``, Amazon ``endpoint`` and ``token_url``) unless every stored
    credential is given again (or removed) in the same request: stored secrets never follow a new address alone.

    ``settings`` are the validated new ones; a setting missing from ``stored_settings`` counts as its default.
    """
    if not stored_credentials:
        return
    try:
        platform = connector_named(connector)
    except (LookupError, ImportError):
        return
    fields = platform.settings_serializer().fields
    missing = sorted(name for name in stored_credentials if name not in (credentials or {}))
    if not missing:
        return
    for name in platform.credential_destinations:
        field = fields.get(name)
        default = getattr(field, "default", None)
        before = stored_settings.get(name, default if isinstance(default, str) else "")
        if _destination(before) != _destination(settings.get(name)):
            raise CredentialsRequired(
                f"Changing settings.{name} would send the stored credentials to another address: give the "
                f"credentials ({', '.join(missing)}) again in the same request.",
                errors={f"settings.{name}": [f"Give the credentials ({', '.join(missing)}) again with this change."]},
                field=f"settings.{name}",
            )


def push_url_rebind_check(*, stored_url: str, url: str, has_secret: bool, secret_given: bool) -> None:
    """Refuse a new push URL for a channel with a signing secret unless the secret is given with it."""
    if has_secret and not secret_given and _destination(stored_url) != _destination(url):
        raise CredentialsRequired(
            "Changing push_url would send the channel's pushes, signed with its secret, to another address: "
            "give the secret again in the same request.",
            errors={"push_url": ["Give the secret again with this change."]},
            field="push_url",
        )


def channel_connector(channel: Channel) -> Connector:
    return connector_named(channel.connector)


def channel_credentials(channel: Channel) -> dict[str, Any]:
    """The channel's decrypted credentials (raises SecretsUnreadable when no configured key opens them)."""
    return decrypt_json(channel.credentials_encrypted)


def channel_credential_names(channel: Channel) -> list[str]:
    """Which credentials are stored (never their values); [] when they cannot be read."""
    try:
        return sorted(channel_credentials(channel))
    except SecretsUnreadable:
        return []


def channel_ref(channel: Channel) -> ChannelRef:
    """The channel as its connector sees it: plain values, credentials and push secret decrypted (and
    remembered by the log formatter, which redacts them from any line).

    Secrets no configured key opens raise SecretsUnreadable (a message naming no secret), after
    opening the channel's one incident about it and logging why.
    """
    try:
        credentials, secret = channel_credentials(channel), secret_value(channel.secret)
    except SecretsUnreadable as err:
        log.error("channel_secrets_unreadable", channel=channel.code, reason=str(err))
        incident_secret_unreadable(owner=f"channel {channel.code}")
        raise
    ref = ChannelRef(
        id=channel.pk,
        code=channel.code,
        settings=dict(channel.settings or {}),
        credentials=credentials,
        push_url=channel.push_url,
        secret=secret,
    )
    secrets_remember(ref.secret_values())
    return ref


def channel_push_configured(channel: Channel) -> tuple[Connector, ChannelRef] | None:
    """The connector and its view of the channel when pushing can happen: active, ``live`` (a channel in
    ``setup`` or ``paused`` is told nothing: no push, no read-back repair; its work stays queued), and its
    connector configured. Every path that sends a quantity or reads one back to repair it goes through here."""
    if not channel.pushes:
        return None
    try:
        connector = channel_connector(channel)
        ref = channel_ref(channel)
    except (LookupError, ImportError, SecretsUnreadable) as err:
        log.error("channel_connector_unusable", channel=channel.code, connector=channel.connector, error=str(err))
        return None
    if not connector.configured(ref):
        return None
    missing = channel_push_refusal(channel, connector)
    if missing:
        log.warning("channel_push_refused", channel=channel.code, reason=missing)
        return None
    return connector, ref


# The settings that name where on the platform the quantities are set: a connector with one of them
# pushes nothing while it is empty (a channel saved before its location was chosen from the list).
PLATFORM_LOCATION_SETTINGS = ("location_id",)


def channel_push_refusal(channel: Channel, connector: Connector | None = None) -> str:
    """Why nothing can be pushed for this channel even when it is live ("" when it can): its connector
    sets quantities at a platform location and none is chosen yet."""
    if connector is None:
        try:
            connector = channel_connector(channel)
        except (LookupError, ImportError):
            return ""
    fields = connector.settings_serializer().fields
    for name in PLATFORM_LOCATION_SETTINGS:
        if name in fields and not str((channel.settings or {}).get(name) or "").strip():
            return (
                f"No platform location is chosen ({name}): nothing is pushed until one is chosen on the "
                "channel's onboarding page."
            )
    return ""


def _unknown_keys(given: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, list[str]]:
    return {key: ["Not a setting of this connector."] for key in given if key not in fields}


def connector_config_clean(
    *,
    connector: str,
    settings: Mapping[str, Any] | None,
    credentials: Mapping[str, Any] | None,
    stored_credentials: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Settings and credentials as the connector validates them; raises ConnectorConfigInvalid.

    ``credentials`` given are laid over the stored ones (a key left out keeps its value, ``null`` or
    "" removes it) and the result must validate whole; None keeps the stored credentials (returned None).
    """
    try:
        platform = connector_named(connector)
    except LookupError as err:
        raise ConnectorConfigInvalid(errors={"connector": [str(err)]}) from err
    except ImportError as err:  # named in the registry, its module not installed
        raise ConnectorConfigInvalid(errors={"connector": [f"The {connector} connector is not installed."]}) from err
    errors: dict[str, Any] = {}
    settings_in = dict(settings or {})
    settings_check = platform.settings_serializer(data=settings_in)
    cleaned_settings: dict[str, Any] = {}
    unknown = _unknown_keys(settings_in, settings_check.fields)
    if not settings_check.is_valid() or unknown:
        errors["settings"] = {**settings_check.errors, **unknown}
    else:
        cleaned_settings = _plain(settings_check.validated_data)
    cleaned_credentials: dict[str, Any] | None = None
    if credentials is not None:
        merged = {**(stored_credentials or {}), **credentials}
        merged = {key: value for key, value in merged.items() if value not in (None, "")}
        credentials_check = platform.credentials_serializer(data=merged)
        unknown = _unknown_keys(credentials, credentials_check.fields)
        if not credentials_check.is_valid() or unknown:
            # Field names and messages only: a credential's value never goes into an answer or a log.
            errors["credentials"] = {**credentials_check.errors, **unknown}
        else:
            cleaned_credentials = _plain(credentials_check.validated_data)
    if errors:
        raise ConnectorConfigInvalid(errors=errors)
    return cleaned_settings, cleaned_credentials


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validated data as JSON values (a serializer may give Decimals, URLs as str...)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        out[key] = value if isinstance(value, str | int | float | bool | list | dict) or value is None else str(value)
    return out


@dataclass(frozen=True)
class ConnectionTest:
    ok: bool
    message: str
    code: str = ""  # why it failed, for programs: ``outbound_refused`` when the outbound rule refused the address


def channel_connection_test(*, channel: Channel) -> ConnectionTest:
    """Ask the platform whether the stored settings and credentials work; the answer is for the merchant."""
    try:
        connector = channel_connector(channel)
        ref = channel_ref(channel)
    except SecretsUnreadable as err:
        return ConnectionTest(False, f"{err} Enter the credentials again.")
    except LookupError as err:
        return ConnectionTest(False, str(err))
    if not connector.configured(ref):
        return ConnectionTest(False, f"{connector.label}: settings or credentials are missing.")
    try:
        message = connector.test_connection(ref)
    except ConnectorError as err:
        message = ref.redact(str(err))
        code = getattr(err, "code", "connection_failed")
        log.info("channel_connection_tested", channel=channel.code, ok=False, code=code, error=message)
        return ConnectionTest(False, f"{connector.label}: {message}", code=code)
    except Exception as err:  # a connector's bug is the merchant's answer too, not a 500
        log.exception("channel_connection_test_failed", channel=channel.code)
        return ConnectionTest(False, f"{connector.label}: {type(err).__name__}: {ref.redact(str(err))}")
    log.info("channel_connection_tested", channel=channel.code, ok=True)
    return ConnectionTest(True, message)
