"""The forecast's knobs change through their service: the safety stock is recomputed at once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.catalog.models import Movement
from apps.core.testing import admin_form
from apps.forecasting.models import ForecastSettings, SafetyForecast
from apps.forecasting.tests.factories import ledger_at
from inventory_site.celery import app as celery_app

pytestmark = pytest.mark.django_db


def test_a_new_service_level_in_the_admin_recomputes_the_forecast_after_commit(
    admin_client, forecast_settings, item, store, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)  # the queued job runs here, on commit
    ledger_at(item, store, [(datetime(2026, 1, 1, tzinfo=UTC), Movement.Kind.RECEIPT, 40)])
    url = f"/admin/forecasting/forecastsettings/{forecast_settings.pk}/change/"
    form = {**admin_form(admin_client, url), "service_level": "0.99"}
    assert not SafetyForecast.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ForecastSettings.current().service_level == Decimal("0.99")
    assert SafetyForecast.objects.filter(item=item, location=store).count() == 168


def test_unchanged_knobs_recompute_nothing(admin_client, forecast_settings, django_capture_on_commit_callbacks):
    url = f"/admin/forecasting/forecastsettings/{forecast_settings.pk}/change/"
    with django_capture_on_commit_callbacks() as callbacks:
        assert admin_client.post(url, admin_form(admin_client, url)).status_code == 302
    assert callbacks == []
