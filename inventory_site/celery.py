"""The Celery application: tasks are found in each app's tasks.py."""

import os

from celery import Celery
from celery.signals import setup_logging

from apps.core.broker import VisibilityRenewal

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inventory_site.settings.local")

app = Celery("stockroom")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Workers renew the visibility of the messages they hold: a dead worker's come back within a minute or two.
app.steps["consumer"].add(VisibilityRenewal)


@setup_logging.connect
def _use_django_logging(**_kwargs: object) -> None:
    """Keep Celery from replacing the structured log configuration."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
