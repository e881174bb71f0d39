"""Secrets at rest: Fernet-encrypted JSON, a key from the environment (rotatable), required in production."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from apps.core.checks import secrets_key_check
from apps.core.secrets import SecretsUnreadable, decrypt_json, derived_key, encrypt_json
from apps.core.tests.test_security import BASE_DIR, production_env

CREDENTIALS = {"access_token": "shpat_0123456789abcdef", "webhook_secret": "whsec-42"}


def test_a_dict_round_trips_and_its_values_are_not_in_the_stored_text():
    key = Fernet.generate_key().decode()
    with override_settings(STOCKROOM_SECRETS_KEY=key):
        token = encrypt_json(CREDENTIALS)
        assert "shpat_" not in token and "whsec" not in token and "access_token" not in token
        assert decrypt_json(token) == CREDENTIALS
        assert encrypt_json(CREDENTIALS) != token  # a fresh IV every time: equal secrets do not look equal
    assert encrypt_json({}) == "" and decrypt_json("") == {}


def test_without_a_key_one_is_derived_from_the_secret_key_and_another_secret_key_cannot_read_it():
    with override_settings(STOCKROOM_SECRETS_KEY="", SECRET_KEY="one-secret-key-" * 4):
        token = encrypt_json(CREDENTIALS)
        assert Fernet(derived_key("one-secret-key-" * 4)).decrypt(token.encode())
    with (
        override_settings(STOCKROOM_SECRETS_KEY="", SECRET_KEY="another-secret-key-" * 4),
        pytest.raises(SecretsUnreadable),
    ):
        decrypt_json(token)


def test_keys_rotate_the_first_encrypts_and_every_one_decrypts():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(STOCKROOM_SECRETS_KEY=old):
        stored = encrypt_json(CREDENTIALS)
    with override_settings(STOCKROOM_SECRETS_KEY=f"{new},{old}"):
        assert decrypt_json(stored) == CREDENTIALS
        rewritten = encrypt_json(CREDENTIALS)
    with override_settings(STOCKROOM_SECRETS_KEY=new):
        assert decrypt_json(rewritten) == CREDENTIALS
        with pytest.raises(SecretsUnreadable):
            decrypt_json(stored)


def test_garbage_is_unreadable_not_a_crash():
    with pytest.raises(SecretsUnreadable):
        decrypt_json("not-a-fernet-token")


def test_where_the_key_is_required_nothing_is_derived_and_the_check_refuses():
    with override_settings(STOCKROOM_SECRETS_KEY="", STOCKROOM_SECRETS_KEY_REQUIRED=True):
        with pytest.raises(ImproperlyConfigured):
            encrypt_json(CREDENTIALS)
        assert [message.id for message in secrets_key_check()] == ["core.E010"]
    with override_settings(STOCKROOM_SECRETS_KEY=Fernet.generate_key().decode(), STOCKROOM_SECRETS_KEY_REQUIRED=True):
        assert secrets_key_check() == []
    with override_settings(STOCKROOM_SECRETS_KEY="too-short"):
        assert [message.id for message in secrets_key_check()] == ["core.E011"]


@pytest.mark.slow
def test_production_settings_refuse_to_start_without_the_key():
    env = production_env()
    env.pop("STOCKROOM_SECRETS_KEY")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "core.E010" in result.stdout + result.stderr
