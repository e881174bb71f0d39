"""Suppliers created at the same moment share one beat interval (threads on their own connections)."""

from __future__ import annotations

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from apps.core.testing import run_all
from apps.suppliers.models import Supplier
from apps.suppliers.services.suppliers import poll_task_name
from apps.suppliers.tests.factories import make_supplier

pytestmark = pytest.mark.django_db(transaction=True)

EVERY = 437  # an interval no other test uses


def _tasks_interval(codes: list[str]) -> set[int]:
    names = [poll_task_name(supplier) for supplier in Supplier.objects.filter(code__in=codes)]
    assert len(names) == len(codes)
    return set(PeriodicTask.objects.filter(name__in=names).values_list("interval_id", flat=True))


def test_suppliers_created_at_once_with_the_same_interval_share_one_schedule():
    codes = [f"race{n}" for n in range(8)]

    def create(n: int) -> None:
        make_supplier(codes[n], connector=Supplier.Connector.REST, poll_interval_s=EVERY)

    assert run_all(create, len(codes)) == []
    schedules = IntervalSchedule.objects.filter(every=EVERY, period=IntervalSchedule.SECONDS)
    assert schedules.count() == 1
    assert _tasks_interval(codes) == {schedules.get().pk}


def test_a_duplicate_interval_left_from_before_does_not_stop_a_new_supplier():
    first, _ = (IntervalSchedule.objects.create(every=EVERY, period=IntervalSchedule.SECONDS) for _ in range(2))
    supplier = make_supplier("late", connector=Supplier.Connector.REST, poll_interval_s=EVERY)
    assert PeriodicTask.objects.get(name=poll_task_name(supplier)).interval_id == first.pk
