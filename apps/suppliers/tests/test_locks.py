"""Suppliers created at the same moment share one beat interval (threads on their own connections)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django_celery_beat.models import IntervalSchedule, PeriodicTask

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
    barrier = threading.Barrier(len(codes))
    errors: list[BaseException] = []

    def create(code: str) -> None:
        try:
            barrier.wait(timeout=30)
            make_supplier(code, connector=Supplier.Connector.REST, poll_interval_s=EVERY)
        except BaseException as err:  # asserted below
            errors.append(err)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(code,)) for code in codes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    schedules = IntervalSchedule.objects.filter(every=EVERY, period=IntervalSchedule.SECONDS)
    assert schedules.count() == 1
    assert _tasks_interval(codes) == {schedules.get().pk}


def test_a_duplicate_interval_left_from_before_does_not_stop_a_new_supplier():
    first, _ = (IntervalSchedule.objects.create(every=EVERY, period=IntervalSchedule.SECONDS) for _ in range(2))
    supplier = make_supplier("late", connector=Supplier.Connector.REST, poll_interval_s=EVERY)
    assert PeriodicTask.objects.get(name=poll_task_name(supplier)).interval_id == first.pk
