"""Incidents and low stock by e-mail, after commit, from a Celery task, to who wants them.

Django's test runner swaps the mail backend for its in-memory one (``mail.outbox``).
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core import mail

from apps.catalog.models import Incident, StockLevel
from apps.catalog.services.incidents import incident_open
from apps.catalog.tests.factories import ItemFactory, LocationFactory, stock
from apps.staff.models import LowStockAlert, NotificationPreference
from apps.staff.services import low_stock_scan
from apps.staff.tasks import low_stock_scan_task
from inventory_site.celery import app as celery_app

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager(monkeypatch):
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)  # the queued task runs here, on commit


@pytest.fixture
def people(django_user_model):
    boss = django_user_model.objects.create_superuser(username="boss", password="pw-boss-123", email="boss@shop.test")
    clerk = django_user_model.objects.create_user(
        username="clerk", password="pw-clerk-1", email="clerk@shop.test", is_staff=True
    )
    clerk.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_incident", "view_stocklevel", "view_all_locations"])
    )
    django_user_model.objects.create_user(username="temp", email="temp@shop.test", is_staff=True)  # sees neither
    django_user_model.objects.create_user(username="customer", email="c@shop.test")  # not staff
    return boss, clerk


def test_an_incident_is_mailed_after_commit_to_who_wants_it(eager, people, django_capture_on_commit_callbacks):
    _boss, clerk = people
    NotificationPreference.objects.create(user=clerk, incidents=False)
    item, store = ItemFactory(sku="HOOD-M"), LocationFactory(code="S1")
    with django_capture_on_commit_callbacks(execute=True):
        incident = incident_open(
            kind=Incident.Kind.OVERSELL, item_id=item.pk, location_id=store.pk, shortfall=2, reference="order:7"
        )
        assert mail.outbox == []  # nothing before commit
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["boss@shop.test"]
    assert sent.subject == "[Stockroom] Oversell (imported order beyond stock): HOOD-M, at S1"
    assert "Short: 2 pcs" in sent.body and f"/admin/catalog/incident/{incident.pk}/change/" in sent.body


def test_a_rolled_back_incident_sends_nothing(eager, people, django_capture_on_commit_callbacks):
    from django.db import transaction

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        incident_open(kind=Incident.Kind.LEDGER_DRIFT, reference="drift:X@Y")
        raise RuntimeError("rolled back")
    assert mail.outbox == []


def test_low_stock_is_mailed_once_until_it_recovers(people):
    boss, _clerk = people
    NotificationPreference.objects.create(user=boss, low_stock=False)
    store = LocationFactory(code="S1")
    hood, cap, tee = ItemFactory(sku="HOOD-M"), ItemFactory(sku="CAP"), ItemFactory(sku="TEE")
    stock(hood, store, 2, safety=3)  # at or below safety: low
    stock(cap, store, 10, safety=3)
    stock(tee, store, 0)  # sold out, no safety: low
    assert low_stock_scan_task.apply().get() == {"new": 2, "recovered": 0, "recipients": 1}
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["clerk@shop.test"]
    body = mail.outbox[0].body
    assert "HOOD-M" in body and "TEE" in body and "CAP" not in body
    assert mail.outbox[0].subject == "[Stockroom] Low stock: 2 item(s) at or below safety"

    assert low_stock_scan() == {"new": 0, "recovered": 0, "recipients": 0}  # told once
    assert len(mail.outbox) == 1
    StockLevel.objects.filter(item=hood).update(on_hand=20)  # recovers...
    assert low_stock_scan()["recovered"] == 1
    StockLevel.objects.filter(item=hood).update(on_hand=1)  # ...and falls again: told again
    assert low_stock_scan()["new"] == 1 and len(mail.outbox) == 2
    assert set(LowStockAlert.objects.values_list("item__sku", flat=True)) == {"HOOD-M", "TEE"}


def test_low_stock_counts_only_where_stock_sells(people):
    """The rule of ``stock.atp``: an inactive location, or supplier stock past its max age, sells nothing;
    its levels are no low stock (a stale feed has an alert of its own)."""
    from datetime import timedelta

    from django.utils import timezone

    shop = LocationFactory(code="S1")
    closed = LocationFactory(code="OLD", is_active=False)
    stale = LocationFactory(code="SUP", stock_valid_until=timezone.now() - timedelta(minutes=1))
    fresh = LocationFactory(code="SUP2", stock_valid_until=timezone.now() + timedelta(hours=1))
    hood = ItemFactory(sku="HOOD-M")
    for location in (shop, closed, stale, fresh):
        stock(hood, location, 1, safety=3)
    assert low_stock_scan()["new"] == 2
    assert set(LowStockAlert.objects.values_list("location__code", flat=True)) == {"S1", "SUP2"}


def test_each_user_edits_only_their_own_settings_in_the_admin(client, people):
    boss, clerk = people
    client.force_login(clerk)
    page = client.get("/admin/staff/notificationpreference/", follow=True)
    own = NotificationPreference.objects.get(user=clerk)
    assert page.redirect_chain[-1][0] == f"/admin/staff/notificationpreference/{own.pk}/change/"
    assert own.incidents and own.low_stock  # the defaults
    saved = client.post(f"/admin/staff/notificationpreference/{own.pk}/change/", {"low_stock": "on"}, follow=True)
    assert "Your notification settings are saved." in saved.content.decode()
    own.refresh_from_db()
    assert (own.incidents, own.low_stock) == (False, True)
    theirs = NotificationPreference.objects.create(user=boss)
    assert client.get(f"/admin/staff/notificationpreference/{theirs.pk}/change/").status_code in (302, 404)
    client.post(f"/admin/staff/notificationpreference/{theirs.pk}/change/", {})
    theirs.refresh_from_db()
    assert theirs.incidents and theirs.low_stock
