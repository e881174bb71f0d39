"""Fixtures every app's tests share: API clients with real tokens, and the demo-sized catalog."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(username="staffer", password="pw-staffer-1", is_staff=True)


def _client_for(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


@pytest.fixture
def staff_api(staff_user) -> APIClient:
    """An API client authenticated with a staff token."""
    from apps.core.services import token_create

    return _client_for(token_create(staff_username=staff_user.username))


@pytest.fixture
def channel_api() -> Callable[[str], APIClient]:
    """Make an API client authenticated as the channel with this code."""
    from apps.core.services import token_create

    def make(code: str) -> APIClient:
        return _client_for(token_create(channel_code=code))

    return make
