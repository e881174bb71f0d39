"""Task names in one style; schedules stored under the old names follow them (migration 0003)."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from inventory_site.celery import app as celery_app

renaming = importlib.import_module("apps.suppliers.migrations.0003_task_names")


def test_every_renamed_task_is_registered_under_its_new_name():
    celery_app.loader.import_default_modules()
    assert {renaming.NEW + name for name in renaming.NAMES} <= set(celery_app.tasks)


@pytest.mark.django_db
def test_a_stored_poll_schedule_follows_the_new_name():
    every = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="supplier-poll:old", task="apps.suppliers.tasks.supplier_poll", interval=every)
    renaming.rename(apps, None, frm=renaming.OLD, to=renaming.NEW)
    assert PeriodicTask.objects.get(name="supplier-poll:old").task == "suppliers.supplier_poll"
