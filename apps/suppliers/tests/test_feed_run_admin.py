"""Feed runs in the admin: durations read as "28 s" / "1.5 min" on the list and on a run's page, never raw."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.suppliers.models import FeedRun
from apps.suppliers.services.ingest import feed_ingest
from apps.suppliers.tests.factories import csv_feed, make_mapping, make_supplier, now_iso

pytestmark = pytest.mark.django_db


@pytest.fixture
def merchant(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-boss-123"))
    return client


def _run(code: str, seconds: float) -> FeedRun:
    supplier = make_supplier(code)
    make_mapping(supplier, "M1")
    run = feed_ingest(supplier=supplier, raw=csv_feed([("M1", 2, now_iso())]))
    FeedRun.objects.filter(pk=run.pk).update(duration=timedelta(seconds=seconds))
    return run


def test_the_run_list_and_page_show_durations_in_words(merchant):
    quick, slow = _run("quick", 28.104), _run("slow", 90.0)
    listing = merchant.get("/admin/suppliers/feedrun/").content.decode()
    assert '<td class="field-duration_shown">28 s</td>' in listing
    assert '<td class="field-duration_shown">1.5 min</td>' in listing
    page = merchant.get(f"/admin/suppliers/feedrun/{quick.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "28 s" in html and "0:00:28" not in html  # not the timedelta's str()
    assert "0:01:30" not in merchant.get(f"/admin/suppliers/feedrun/{slow.pk}/change/").content.decode()


def test_a_running_run_shows_how_long_it_runs_and_its_heartbeat(merchant):
    supplier = make_supplier("busy")
    run = FeedRun.objects.create(supplier=supplier, source="rest")

    def started_150_s_ago_heartbeat_12_s_ago() -> None:  # again before each page: a busy machine takes seconds
        FeedRun.objects.filter(pk=run.pk).update(
            started_at=timezone.now() - timedelta(seconds=150), heartbeat_at=timezone.now() - timedelta(seconds=12)
        )

    started_150_s_ago_heartbeat_12_s_ago()
    listing = merchant.get("/admin/suppliers/feedrun/").content.decode()
    assert "running for 2.5 min" in listing
    started_150_s_ago_heartbeat_12_s_ago()
    html = merchant.get(f"/admin/suppliers/feedrun/{run.pk}/change/").content.decode()
    assert "running for 2.5 min" in html and "12 s ago" in html
