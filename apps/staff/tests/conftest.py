"""The staff pages' tests share the forecasting fixtures: a store, an item and the forecast knobs."""

from apps.forecasting.tests.conftest import forecast_settings, item, store

__all__ = ["forecast_settings", "item", "store"]
