"""Ledger reconciliation: drift is found, reported once, counted in metrics, and exits 1."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from prometheus_client import REGISTRY

from apps.catalog.models import Incident, StockLevel
from apps.catalog.services.reconcile import ledger_reconcile
from apps.catalog.tasks import ledger_reconcile_task
from apps.catalog.tests.factories import ItemFactory, LocationFactory, stock

pytestmark = pytest.mark.django_db


@pytest.fixture
def levels():
    wh = LocationFactory(code="WH")
    return [stock(ItemFactory(sku=f"I{n}"), wh, 10 + n) for n in range(3)]


def test_no_drift_when_ledger_and_levels_agree(levels):
    report = ledger_reconcile()
    assert report.ok and report.pairs_checked == 3
    assert REGISTRY.get_sample_value("stockroom_ledger_drift_pairs") == 0
    assert not Incident.objects.exists()


def test_drift_opens_one_incident_per_pair_while_open(levels):
    StockLevel.objects.filter(pk=levels[1].pk).update(on_hand=99, reserved=1)
    report = ledger_reconcile()
    assert [(d.sku, d.level_on_hand, d.ledger_on_hand, d.level_reserved, d.ledger_reserved) for d in report.drifts] == [
        ("I1", 99, 11, 1, 0)
    ]
    assert REGISTRY.get_sample_value("stockroom_ledger_drift_pairs") == 1
    assert ledger_reconcile().incidents_opened == []  # still open: not opened twice
    (incident,) = Incident.objects.filter(kind=Incident.Kind.LEDGER_DRIFT)
    assert "I1@WH" in incident.detail
    Incident.objects.filter(pk=incident.pk).update(status=Incident.Status.RESOLVED)
    assert len(ledger_reconcile().incidents_opened) == 1  # resolved but still drifting: reported again


def test_a_level_without_ledger_rows_is_drift(levels):
    StockLevel.objects.create(item=ItemFactory(sku="GHOST"), location=levels[0].location, on_hand=4)
    assert [d.sku for d in ledger_reconcile().drifts] == ["GHOST"]


def test_reconcile_selected_pairs_only(levels):
    StockLevel.objects.filter(pk=levels[0].pk).update(on_hand=0)
    report = ledger_reconcile(pairs=[(levels[1].item_id, levels[1].location_id)])
    assert report.ok and report.pairs_checked == 1


def test_command_prints_report_and_exits_1_on_drift(levels, capsys):
    call_command("reconcile_ledger")
    assert "no drift" in capsys.readouterr().out
    StockLevel.objects.filter(pk=levels[2].pk).update(on_hand=1)
    with pytest.raises(SystemExit) as exited:
        call_command("reconcile_ledger")
    assert exited.value.code == 1
    assert "DRIFT I2@WH" in capsys.readouterr().out


def test_task_and_nightly_schedule(levels, settings):
    assert ledger_reconcile_task.run() == {"pairs_checked": 3, "drifting": 0}
    job = settings.CELERY_BEAT_SCHEDULE["ledger-reconcile-nightly"]
    assert job["task"] == ledger_reconcile_task.name
    assert job["schedule"].hour == {3} and job["schedule"].minute == {0}
