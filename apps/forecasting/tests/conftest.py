from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.catalog.models import Location
from apps.catalog.tests.factories import ItemFactory, LocationFactory
from apps.forecasting.models import ForecastSettings

# A Wednesday noon; its week began on Monday 16 November.
NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


@pytest.fixture
def forecast_settings(db) -> ForecastSettings:
    """Four weeks of history, half-life one week, 15-minute exposure window, 95%."""
    obj = ForecastSettings.current()
    obj.history_weeks = 4
    obj.half_life_weeks = Decimal("1")
    obj.min_slot_weeks = 4
    obj.sync_latency_seconds = 60
    obj.reaction_seconds = 840
    obj.service_level = Decimal("0.95")
    obj.save()
    return obj


@pytest.fixture
def store(db) -> Location:
    return LocationFactory(code="S1", kind=Location.Kind.STORE)


@pytest.fixture
def item(db):
    return ItemFactory(sku="HOOD-M", name="Hoodie M")
