"""The channel form of the back office, with its connector section: settings and write-only credentials of
each connector, rendered from the connector's own serializers and checked by them (``connector_config_clean``).

A field of connector ``shopify`` is named ``settings__shopify__shop_url`` or
``credentials__shopify__access_token``; only the section of the chosen connector is read. A credential
field left blank keeps the stored value, so the form never shows or needs one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django import forms
from django.db import models
from django.utils.html import escape
from rest_framework import serializers

from apps.channels.connectors import CONNECTOR_CHOICES, CONNECTORS, connector_named
from apps.channels.connectors.base import Connector
from apps.channels.models import STOCKROOM_CONNECTOR, Channel
from apps.channels.services.connection import (
    ConnectorConfigInvalid,
    CredentialsRequired,
    channel_credential_names,
    channel_credentials,
    connector_config_clean,
    credentials_rebind_check,
    push_url_rebind_check,
)
from apps.core.secrets import UNREADABLE_TEXT, SecretsUnreadable, readable

SETTINGS, CREDENTIALS = "settings", "credentials"


@dataclass(frozen=True)
class Section:
    """One connector's part of the form."""

    name: str
    label: str
    settings: list[str]  # form field names
    credentials: list[str]


def available_connectors() -> Iterator[tuple[str, str, Connector]]:
    """The registry's connectors whose module is installed, with their labels, in the registry's order."""
    labels = dict(CONNECTOR_CHOICES)
    for name in CONNECTORS:
        try:
            connector = connector_named(name)
        except (LookupError, ImportError):
            continue
        yield name, labels.get(name, connector.label), connector


def field_name(part: str, connector: str, key: str) -> str:
    return f"{part}__{connector}__{key}"


# What the merchant reads next to the channel's own fields: what each number does, in plain words
# (the model's names stay as the API spells them).
PLAIN_WORDS: dict[str, tuple[str, str]] = {
    "rate_per_s": (
        "Pushes per second",
        "At most this many requests a second go to the platform, so it never turns them away for sending too "
        "fast. Empty: the limit the connector knows for its platform.",
    ),
    "burst": (
        "Pushes at once",
        "How many requests may leave back to back (a burst, after a quiet while) before the per-second pace "
        "applies. Empty: the connector's default.",
    ),
    "batch_size": ("Listings per request", "Most listings sent to the platform in one request."),
    "coefficient": (
        "Share of stock shown",
        "The share of what is available that this channel shows: 1 shows all of it, 0.8 shows 80 % (rounded "
        "down), 0 shows nothing. A listing may set its own.",
    ),
    "buffer": (
        "Units held back",
        "Units never shown on this channel: it shows what is available minus these (never below 0), to cover "
        "a sale in the seconds before an update lands. A listing may set its own.",
    ),
    "push_url": ("Push URL", "Where Stockroom sends each listing's quantity (the Stockroom push protocol)."),
}


def plain_words(fields: dict[str, forms.Field]) -> None:
    for name, (label, help_text) in PLAIN_WORDS.items():
        if name in fields:
            fields[name].label, fields[name].help_text = label, help_text


ACRONYMS = {"url": "URL", "api": "API", "id": "ID", "sku": "SKU", "lwa": "LWA", "gid": "GID"}


def field_label(field: serializers.Field) -> str:
    """``shop_url`` reads "Shop URL", ``location_id`` "Location ID"."""
    name = str(field.field_name or "")
    if field.label and str(field.label) != name.replace("_", " ").capitalize():
        return str(field.label)  # the connector's own label, not DRF's one made from the name
    words = name.split("_")
    text = " ".join(ACRONYMS.get(word.lower(), word) for word in words)
    return text[:1].upper() + text[1:]


def form_field(field: serializers.Field, *, secret: bool = False) -> forms.Field:
    """A form field standing for a serializer field (the serializer still has the last word in ``clean``)."""
    common: dict[str, Any] = {
        "required": False,  # checked by the connector for the chosen connector only
        # The admin shows help texts as HTML: a placeholder such as https://<shop>.myshopify.com must show.
        "help_text": escape(str(field.help_text or "")),
        "label": field_label(field),
    }
    # Wide enough for what is typed in: a full Shopify location GID, a shop URL, a token.
    wide = {"class": "vTextField"}
    if secret:
        attrs = {"autocomplete": "off", **wide}
        return forms.CharField(widget=forms.PasswordInput(render_value=False, attrs=attrs), **common)
    if isinstance(field, serializers.BooleanField):
        return forms.BooleanField(**common)
    if isinstance(field, serializers.ChoiceField):
        return forms.ChoiceField(choices=[("", "—"), *field.choices.items()], **common)
    if isinstance(field, serializers.IntegerField):
        return forms.IntegerField(**common)
    if isinstance(field, serializers.FloatField | serializers.DecimalField):
        return forms.DecimalField(**common)
    if isinstance(field, serializers.DictField | serializers.ListField):
        # A structure (Shopify's location_map): shown and typed as JSON, read back as the same structure.
        return forms.JSONField(widget=forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField"}), **common)
    if isinstance(field, serializers.URLField):
        return forms.URLField(assume_scheme="https", widget=forms.URLInput(attrs={"class": "vURLField"}), **common)
    return forms.CharField(max_length=getattr(field, "max_length", None), widget=forms.TextInput(attrs=wide), **common)


def connector_sections() -> tuple[list[Section], dict[str, forms.Field]]:
    sections, fields = [], {}
    for name, label, connector in available_connectors():
        section = Section(name, label, [], [])
        for part, serializer_class, names in (
            (SETTINGS, connector.settings_serializer, section.settings),
            (CREDENTIALS, connector.credentials_serializer, section.credentials),
        ):
            for key, field in serializer_class().fields.items():
                if field.read_only:
                    continue
                names.append(field_name(part, name, key))
                fields[names[-1]] = form_field(field, secret=part == CREDENTIALS)
        sections.append(section)
    return sections, fields


def _model_form_field(field: models.Field, **kwargs: Any) -> forms.Field | None:
    # An address typed without a scheme is taken as https (Django 6's default, set now).
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


class ChannelFormBase(forms.ModelForm):
    sections: list[Section] = []
    # The push protocol's signing secret, write-only: a new push_url needs it again (credentials bound).
    new_secret = forms.CharField(
        required=False,
        max_length=200,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        label="Secret",
        help_text="Signs the pushes (HMAC-SHA256). Write-only: leave blank to keep the stored one; a new "
        "push URL needs it typed again.",
    )

    class Meta:
        model = Channel
        # The admin picks the fields (its fieldsets); a Meta.fields here would hide every other one from it.
        exclude = ("secret", "settings")  # noqa: DJ006
        formfield_callback = _model_form_field

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain_words(self.fields)
        channel: Channel = self.instance
        # As stored: validation copies the form's values onto the instance before the save.
        self.stored_connector = channel.connector if channel.pk else None
        self.stored_settings = dict(channel.settings or {})
        if "connector" not in self.fields:
            return  # someone who may only look: the admin shows the fields read-only, none of them is edited
        connector = self.fields["connector"]
        assert isinstance(connector, forms.ChoiceField)
        connector.required = False
        connector.choices = [(name, label) for name, label, _ in available_connectors()]
        connector.help_text = (
            "How Stockroom talks to the channel. The chosen connector's settings and credentials follow (the "
            "Stockroom push protocol needs only a push URL)."
        )
        stored = set(channel_credential_names(channel)) if channel.pk else set()
        unreadable = bool(channel.pk and channel.credentials_encrypted and not readable(channel.credentials_encrypted))
        for section in self.sections:
            current = section.name == channel.connector and channel.pk is not None
            for name in section.settings:
                key = name.split("__", 2)[2]
                if current and key in (channel.settings or {}):
                    self.initial[name] = channel.settings[key]
            for name in section.credentials:
                key = name.split("__", 2)[2]
                field = self.fields[name]
                if current and unreadable:
                    field.help_text = f"{UNREADABLE_TEXT.capitalize()}: no configured key opens the stored value."
                    field.widget.attrs["placeholder"] = UNREADABLE_TEXT
                elif current and key in stored:
                    field.help_text = "Stored (not shown). Leave blank to keep it; type a new value to replace it."
                    field.widget.attrs["placeholder"] = "•••••• stored"
                elif not field.help_text:
                    field.help_text = "Write-only: never shown again once saved."

    def chosen_connector(self) -> str:
        return self.cleaned_data.get("connector") or self.stored_connector or STOCKROOM_CONNECTOR

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        connector = self.chosen_connector()
        cleaned["connector"] = connector
        if self.instance.pk and "push_url" in self.changed_data:
            try:
                push_url_rebind_check(
                    stored_url=Channel.objects.filter(pk=self.instance.pk).values_list("push_url", flat=True)[0],
                    url=cleaned.get("push_url") or "",
                    has_secret=bool(self.instance.secret),
                    secret_given=bool(cleaned.get("new_secret")),
                )
            except CredentialsRequired:
                self.add_error(
                    "push_url",
                    "This channel signs its pushes with a secret: type the secret again with the new push URL, "
                    "so that the stored one never goes to a new address alone.",
                )
        section = next((s for s in self.sections if s.name == connector), None)
        if section is None:
            return cleaned
        settings = {
            name.split("__", 2)[2]: cleaned[name] for name in section.settings if cleaned.get(name) not in (None, "")
        }
        given = {name.split("__", 2)[2]: cleaned[name] for name in section.credentials if cleaned.get(name)}
        same = connector == self.stored_connector
        stored: dict[str, Any] = {}
        if same:
            try:
                stored = channel_credentials(self.instance)
            except SecretsUnreadable:
                stored = {}
        try:
            settings, _ = connector_config_clean(
                connector=connector, settings=settings, credentials=given if given or not same else None,
                stored_credentials=stored,
            )  # fmt: skip
        except ConnectorConfigInvalid as err:
            self._errors_from(connector, err.data.get("errors") or {})
            return cleaned
        if same:
            try:
                credentials_rebind_check(
                    connector=connector,
                    stored_settings=self.stored_settings,
                    settings=settings,
                    stored_credentials=stored,
                    credentials=given,
                )
            except CredentialsRequired as err:
                name = str(err.data.get("field", "")).removeprefix(f"{SETTINGS}.")
                self.add_error(field_name(SETTINGS, connector, name), err.detail)
                return cleaned
        cleaned["settings"] = settings
        cleaned["credentials"] = given or None  # laid over the stored ones by the service
        return cleaned

    def _errors_from(self, connector: str, errors: dict[str, Any]) -> None:
        for part in (SETTINGS, CREDENTIALS):
            for key, messages in (errors.get(part) or {}).items():
                name = field_name(part, connector, key)
                text = [str(m) for m in (messages if isinstance(messages, list) else [messages])]
                if name in self.fields:
                    self.add_error(name, text)
                else:
                    self.add_error(None, f"{part} {key}: {' '.join(text)}")
        if "connector" in errors:
            self.add_error("connector", [str(m) for m in errors["connector"]])

    def connector_changes(self) -> dict[str, Any]:
        """What the service is given for the connector: the connector, its settings, new credentials."""
        if "settings" not in self.cleaned_data:
            return {}
        changes: dict[str, Any] = {}
        if self.cleaned_data["connector"] != self.stored_connector:
            changes["connector"] = self.cleaned_data["connector"]
        if self.cleaned_data["settings"] != self.stored_settings or changes:
            changes["settings"] = self.cleaned_data["settings"]
        if self.cleaned_data.get("credentials"):
            changes["credentials"] = self.cleaned_data["credentials"]
        return changes


def channel_form_class() -> type[ChannelFormBase]:
    """The form with a section per installed connector (the registry is read when the page is built)."""
    sections, fields = connector_sections()
    return type("ChannelForm", (ChannelFormBase,), {**fields, "sections": sections})
