"""Secrets kept in the database (a channel platform's credentials, a channel's push secret, a
supplier's secret), encrypted at rest with Fernet.

The key is ``STOCKROOM_SECRETS_KEY``: one Fernet key, or several separated by commas to rotate
(the first encrypts, every one decrypts; run ``manage.py rotate_secrets``, then drop the old key). Where it is
empty and not required (a local run, the tests), a key is derived from ``SECRET_KEY`` so that
nothing needs setting up; production requires it (``STOCKROOM_SECRETS_KEY_REQUIRED``), and the
system check ``core.E010`` refuses to start without it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps as django_apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models


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


# --- Secrets in columns of their own -------------------------------------------------------------
#
# A secret kept in the database is one line on its model: ``secret = EncryptedTextField(blank=True,
# default="")``. The column holds a Fernet token ("" when nothing is stored); reading the record gives
# the plain text, or an ``UnreadableSecret`` when no configured key opens it; code that uses the value
# passes it through ``secret_value``, which refuses an unreadable one (SecretsUnreadable). Columns
# whose token code opens itself (a channel's JSON credentials) are ``FernetTokenField``. Both kinds
# are found by ``sealed_columns`` for the key rotation (``manage.py rotate_secrets``) and /healthz.

UNREADABLE_TEXT = "unreadable: enter again"


class UnreadableSecret:
    """A stored secret that no configured key opens (the key changed without a rotation).

    It keeps the stored token, so saving its record for another change loses nothing, and gives no
    value: ``secret_value`` raises SecretsUnreadable. It is true (something is stored).
    """

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __str__(self) -> str:
        return UNREADABLE_TEXT

    def __repr__(self) -> str:
        return "<UnreadableSecret>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnreadableSecret) and other.token == self.token

    def __hash__(self) -> int:
        return hash(self.token)


def secret_value(value: str | UnreadableSecret | None) -> str:
    """The plain text of an ``EncryptedTextField`` ("" when none is stored): the one way to use it."""
    if isinstance(value, UnreadableSecret):
        raise SecretsUnreadable("The stored secret cannot be decrypted with STOCKROOM_SECRETS_KEY; enter it again.")
    return value or ""


def secret_state(value: str | UnreadableSecret | None) -> str:
    """What a page may say of a stored secret: "" (none), "Stored" or "unreadable: enter again"."""
    if isinstance(value, UnreadableSecret):
        return UNREADABLE_TEXT
    return "Stored" if value else ""


def encrypt_text(value: str) -> str:
    """Text as a Fernet token; "" stays "" (nothing stored)."""
    return fernet().encrypt(value.encode()).decode() if value else ""


def decrypt_text(token: str) -> str | UnreadableSecret:
    if not token:
        return ""
    try:
        return fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError, UnicodeDecodeError):
        return UnreadableSecret(token)


class FernetTokenField(models.TextField):  # type: ignore[type-arg]
    """A column holding a Fernet token that its code encrypts and opens itself (``encrypt_json``)."""


class EncryptedTextField(FernetTokenField):
    """Text encrypted at rest: the column holds its Fernet token, the record the plain text.

    Queries compare tokens, never text (only "" can be looked up). Writing an ``UnreadableSecret``
    back writes the token it came with.
    """

    description = "Text encrypted at rest (Fernet)"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str | UnreadableSecret | None:
        return value if value is None else decrypt_text(value)

    def to_python(self, value: Any) -> Any:
        if value is None or isinstance(value, str | UnreadableSecret):
            return value
        return str(value)

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, UnreadableSecret):
            return value.token
        return encrypt_text(str(value))


@dataclass(frozen=True)
class SealedColumn:
    """One column of Fernet tokens: its model and field."""

    model: type[models.Model]
    field: models.Field  # type: ignore[type-arg]

    @property
    def name(self) -> str:
        return f"{self.model._meta.label_lower}.{self.field.name}"

    def quoted(self) -> tuple[str, str, str]:
        """(table, primary key column, this column), quoted for SQL."""
        meta, quote = self.model._meta, connection.ops.quote_name
        return quote(meta.db_table), quote(str(getattr(meta.pk, "column", "id"))), quote(str(self.field.column))


def sealed_columns() -> list[SealedColumn]:
    """Every column of every installed model that holds Fernet tokens."""
    return [
        SealedColumn(model, field)
        for model in django_apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, FernetTokenField)
    ]


@dataclass(frozen=True)
class SealedRow:
    column: SealedColumn
    pk: Any
    label: str  # "channel web": the model's name and the record's code (or primary key)
    token: str


def sealed_rows(column: SealedColumn) -> list[SealedRow]:
    """The stored tokens of a column (not ""), read as stored: no decryption on the way."""
    meta = column.model._meta
    table, pk, value = column.quoted()
    names = {field.name for field in meta.concrete_fields}
    label = connection.ops.quote_name(str(getattr(meta.get_field("code"), "column", "code"))) if "code" in names else pk
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {pk}, {label}, {value} FROM {table} WHERE {value} <> '' ORDER BY 1")
        rows = cursor.fetchall()
    return [SealedRow(column, pk, f"{meta.verbose_name} {label}", token) for pk, label, token in rows]


def readable(token: str) -> bool:
    try:
        fernet().decrypt(token.encode())
    except (InvalidToken, ValueError):
        return False
    return True


def secrets_unreadable() -> list[str]:
    """The records holding a secret no configured key opens, as "channel web" (each named once)."""
    labels: list[str] = []
    for column in sealed_columns():
        for row in sealed_rows(column):
            if row.label not in labels and not readable(row.token):
                labels.append(row.label)
    return labels


@dataclass
class RotationReport:
    rotated: dict[str, int] = dataclass_field(default_factory=dict)  # column name -> rows re-encrypted
    unreadable: list[str] = dataclass_field(default_factory=list)  # "channel web (channels.channel.secret)"


def secrets_rotate() -> RotationReport:
    """Re-encrypt every stored secret under the first key of STOCKROOM_SECRETS_KEY.

    A row no key opens is named and left as it is; the others are rotated all the same. Each row
    is written only if it still holds the token that was read (a concurrent save wins).
    """
    report = RotationReport()
    multi = fernet()
    for column in sealed_columns():
        (table, pk, value), done = column.quoted(), 0
        for row in sealed_rows(column):
            try:
                fresh = multi.rotate(row.token.encode()).decode()
            except (InvalidToken, ValueError):
                report.unreadable.append(f"{row.label} ({column.name})")
                continue
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} SET {value} = %s WHERE {pk} = %s AND {value} = %s", [fresh, row.pk, row.token]
                )
                done += cursor.rowcount
        report.rotated[column.name] = done
    return report


def column_encrypt(schema_editor: Any, *, table: str, column: str) -> int:
    """Encrypt the plain values of one column in place (a data migration's step); returns how many.

    Values already a token this configuration opens are left alone, so running it twice is harmless.
    """
    quote, done = schema_editor.connection.ops.quote_name, 0
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT id, {quote(column)} FROM {quote(table)} WHERE {quote(column)} <> ''")
        for pk, value in cursor.fetchall():
            if readable(value):
                continue
            cursor.execute(f"UPDATE {quote(table)} SET {quote(column)} = %s WHERE id = %s", [encrypt_text(value), pk])
            done += 1
    return done


def column_decrypt(schema_editor: Any, *, table: str, column: str) -> int:
    """Undo ``column_encrypt``: tokens back to plain text (an unreadable one is left as it is)."""
    quote, done = schema_editor.connection.ops.quote_name, 0
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT id, {quote(column)} FROM {quote(table)} WHERE {quote(column)} <> ''")
        for pk, token in cursor.fetchall():
            value = decrypt_text(token)
            if isinstance(value, UnreadableSecret):
                continue
            cursor.execute(f"UPDATE {quote(table)} SET {quote(column)} = %s WHERE id = %s", [value, pk])
            done += 1
    return done
