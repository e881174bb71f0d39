"""A safety-stock override far beyond demand and stock asks for a confirmation, on the server, then saves."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from apps.catalog.models import StockLevel
from apps.catalog.tests.factories import stock
from apps.forecasting.models import SafetyAudit, SafetyForecast, SafetyOverride
from apps.forecasting.selectors import override_far_beyond

LIST = "/staff/safety-stock/"
SHOTS = Path(settings.VAR_DIR) / "screenshots"


@pytest.fixture
def editor(django_user_model):
    user = django_user_model.objects.create_user(username="planner", password="pw-planner-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["change_safetyoverride", "view_all_locations"]))
    return user


@pytest.fixture
def level(item, store) -> StockLevel:
    """12 on hand; the forecast holds back at most 2 in any hour of the week."""
    level = stock(item, store, 12, safety=1)
    now = timezone.now()
    SafetyForecast.objects.bulk_create(
        [
            SafetyForecast(item=item, location=store, slot=slot, value=2 if slot == 10 else 1, computed_at=now)
            for slot in range(168)
        ]
    )
    return level


def _post(client, level, **data):
    body = {"level": level.pk, "action": "set", "value": "4", "reason": "Promo", "valid_until": ""}
    body.update(data)
    return client.post(LIST, body)


@pytest.mark.django_db
def test_far_beyond_means_over_ten_times_the_forecast_and_over_on_hand(level):
    assert override_far_beyond(level=level, value=20) is None  # over on hand, not over 10 x 2
    assert override_far_beyond(level=level, value=21) is not None  # over both
    level.on_hand = 500
    assert override_far_beyond(level=level, value=400) is None  # a lot, but it is there
    SafetyForecast.objects.all().delete()
    level.on_hand = 0
    # No forecast: beyond ten units and beyond what is there.
    assert override_far_beyond(level=level, value=10) is None
    check = override_far_beyond(level=level, value=11)
    assert check is not None and "there is none yet" in check.message


@pytest.mark.django_db
def test_an_extreme_override_waits_for_its_confirmation(editor, level):
    client = Client()
    client.force_login(editor)

    asked = _post(client, level, value="500", reason="typo?")
    assert asked.status_code == 200
    html = asked.content.decode()
    assert "override-warning" in html and "more than 10 times" in html and "12 on hand" in html
    assert 'name="confirm"' in html and 'name="confirmed_value" value="500"' in html
    assert not SafetyOverride.objects.exists() and StockLevel.objects.get(pk=level.pk).safety == 1

    # A tick for another value does not count (the value changed after the warning).
    _post(client, level, value="800", reason="typo?", confirm="on", confirmed_value="500")
    assert not SafetyOverride.objects.exists()

    saved = _post(client, level, value="500", reason="Hold all for the event", confirm="on", confirmed_value="500")
    assert saved.status_code == 302
    assert StockLevel.objects.get(pk=level.pk).safety == 500
    assert SafetyAudit.objects.get().new_safety == 500


@pytest.mark.django_db
def test_ordinary_overrides_save_without_a_question(editor, level):
    client = Client()
    client.force_login(editor)
    assert _post(client, level, value="15").status_code == 302  # over on hand, but within 10 x the forecast
    assert StockLevel.objects.get(pk=level.pk).safety == 15
