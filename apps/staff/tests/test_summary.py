"""The worker's `summary` line: what happened to the business in the last minute, counted from the database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from structlog.testing import capture_logs

from apps.catalog.models import Incident
from apps.catalog.services.incidents import incident_open
from apps.catalog.tests.factories import LocationFactory
from apps.orders.tests.conftest import shop  # noqa: F401  (the orders tests' small shop, a fixture)
from apps.staff.schedules import BEAT_SCHEDULE
from apps.staff.selectors import activity_summary
from apps.staff.tasks import activity_summary_task
from apps.suppliers.models import FeedRun, Supplier

pytestmark = pytest.mark.django_db


def test_beat_sends_the_summary_every_minute():
    job = BEAT_SCHEDULE["staff-activity-summary"]
    assert (job["task"], job["schedule"], job["kwargs"]) == ("staff.activity_summary", 60.0, {"window_s": 60})


def test_the_summary_counts_the_window(shop, channel_api):  # noqa: F811
    web = channel_api("web")
    for n in range(3):
        response = web.post(
            "/api/v1/orders/",
            {"external_id": f"S{n}", "lines": [{"sku": "hood", "quantity": 1}]},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"s-{n}",
        )
        assert response.status_code == 201
    location = LocationFactory(code="ACME", kind="supplier")
    supplier = Supplier.objects.create(code="ACME", name="Acme", connector="rest", location=location)
    FeedRun.objects.create(
        supplier=supplier, status=FeedRun.Status.SUCCEEDED, rows_read=10, rows_accepted=8, rows_quarantined=2
    )
    FeedRun.objects.create(supplier=supplier, status=FeedRun.Status.FAILED)
    old = incident_open(kind=Incident.Kind.FEED_REFUSED, detail="an hour ago")
    Incident.objects.filter(pk=old.pk).update(opened_at=timezone.now() - timedelta(hours=1))
    incident_open(kind=Incident.Kind.FEED_REFUSED, detail="now")

    with capture_logs() as logs:
        fields = activity_summary_task(window_s=60)

    (line,) = [entry for entry in logs if entry["event"] == "summary"]
    assert line["log_level"] == "info"
    assert fields == {key: value for key, value in line.items() if key not in ("event", "log_level")}
    assert fields["orders_in"] == 3 and fields["window_s"] == 60
    assert (fields["feeds"], fields["feeds_failed"], fields["rows_quarantined"]) == (2, 1, 2)
    assert (fields["incidents_opened"], fields["incidents_open"]) == (1, 2)
    assert fields["push_dead"] == 0 and fields["push_retrying"] == 0
    # A minute later the orders are out of the window; the open incidents are still open.
    later = activity_summary(until=timezone.now() + timedelta(seconds=61), window_s=60)
    assert (later.orders_in, later.feed_runs, later.incidents_open) == (0, 0, 2)
