"""The beat jobs, their tasks and the management command."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from apps.catalog.models import Movement, StockLevel
from apps.catalog.tests.factories import stock
from apps.forecasting.models import ReorderRule, SafetyForecast
from apps.forecasting.tasks import safety_apply_task, safety_recompute_task
from apps.forecasting.tests.factories import ledger_at


def test_beat_schedule_has_the_nightly_recompute_and_the_slot_apply():
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["forecasting-safety-recompute"]["task"] == safety_recompute_task.name
    assert schedule["forecasting-safety-apply"]["task"] == safety_apply_task.name


def test_recompute_task_stores_forecasts_and_applies_the_current_slot(forecast_settings, item, store):
    ledger_at(item, store, [(datetime(2026, 1, 1, tzinfo=UTC), Movement.Kind.RECEIPT, 40)])
    item.safety_min = 2
    item.save()
    outcome = safety_recompute_task.apply().get()
    assert outcome == {"pairs": 1, "forecasts": 168, "changed": 1, "reorder_rules_changed": 0}
    assert StockLevel.objects.get(item=item).safety == 2
    # The reorder point follows the forecast too (a new rule: nothing sold, the safety stock alone).
    assert ReorderRule.objects.get(item=item, location=store).reorder_point == 2
    assert safety_apply_task.apply().get() == {"levels": 1, "changed": 0, "expired": 0}


def test_command_reports_progress_and_applies(forecast_settings, item, store):
    stock(item, store, 3)
    out = StringIO()
    call_command("recompute_safety", stdout=out)
    text = out.getvalue()
    assert "0/1 item-locations" in text and "1/1 item-locations (100%)" in text
    assert "168 slot forecasts for 1 item-locations" in text and "Applied the current slot" in text
    assert "Reorder points: 1 rules follow the forecast (1 new" in text
    assert SafetyForecast.objects.filter(item=item).count() == 168
    assert ReorderRule.objects.filter(item=item, location=store).exists()


def test_command_can_target_one_sku_without_applying(forecast_settings, item, store):
    stock(item, store, 3)
    out = StringIO()
    call_command("recompute_safety", "--sku", "HOOD-M", "--no-apply", stdout=out)
    assert "Applied" not in out.getvalue()
    with pytest.raises(CommandError, match="Unknown SKU: NOPE"):
        call_command("recompute_safety", "--sku", "NOPE", stdout=StringIO())
