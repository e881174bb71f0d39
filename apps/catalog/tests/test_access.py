"""Which locations a user sees: every one (superusers, merchants, viewers) or only those assigned."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Permission
from django.db import IntegrityError, connection, transaction

from apps.catalog.access import (
    location_ids_for,
    locations_for,
    scope_to_locations,
    sees_all_locations,
    user_locations,
)
from apps.catalog.errors import InvalidAssignment
from apps.catalog.models import Location, LocationMember, Movement, StockLevel, Transfer
from apps.catalog.services.access import user_locations_set
from apps.catalog.services.transfers import TransferLineSpec, transfer_create
from apps.catalog.tests.factories import ItemFactory, LocationFactory, stock

pytestmark = pytest.mark.django_db


@pytest.fixture
def places():
    return {
        "s1": LocationFactory(code="S1", kind=Location.Kind.STORE),
        "s2": LocationFactory(code="S2", kind=Location.Kind.STORE),
        "w1": LocationFactory(code="W1", kind=Location.Kind.WAREHOUSE),
        "sup": LocationFactory(code="ACME", kind=Location.Kind.SUPPLIER),
    }


@pytest.fixture
def clerk(django_user_model):
    return django_user_model.objects.create_user(username="clerk", password="pw-clerk-1", is_staff=True)


def codes(locations) -> list[str]:
    return sorted(location.code for location in locations)


def test_a_user_without_assigned_locations_sees_none(clerk, places):
    assert not sees_all_locations(clerk)
    assert location_ids_for(clerk) == []
    assert list(locations_for(clerk)) == []


def test_assigned_locations_are_the_only_ones_seen(clerk, places):
    saved = user_locations_set(user=clerk, locations=[places["s1"], places["w1"]])
    assert codes(saved) == ["S1", "W1"]
    assert codes(locations_for(clerk)) == ["S1", "W1"]
    assert codes(user_locations(clerk)) == ["S1", "W1"]


def test_setting_locations_again_replaces_them(clerk, places):
    user_locations_set(user=clerk, locations=[places["s1"], places["w1"]])
    user_locations_set(user=clerk, locations=[places["s2"], places["w1"]])
    assert codes(locations_for(clerk)) == ["S2", "W1"]
    user_locations_set(user=clerk, locations=[])
    assert list(locations_for(clerk)) == []
    assert not LocationMember.objects.exists()


def test_superusers_and_holders_of_the_all_locations_permission_see_every_location(clerk, django_user_model, places):
    boss = django_user_model.objects.create_superuser(username="boss", password="pw-boss-123")
    assert sees_all_locations(boss) and location_ids_for(boss) is None
    assert codes(locations_for(boss)) == ["ACME", "S1", "S2", "W1"]
    clerk.user_permissions.add(Permission.objects.get(codename="view_all_locations"))
    clerk = django_user_model.objects.get(pk=clerk.pk)  # permissions are cached on the object
    assert codes(locations_for(clerk)) == ["ACME", "S1", "S2", "W1"]


def test_inactive_and_anonymous_users_see_nothing(clerk, places):
    from django.contrib.auth.models import AnonymousUser

    user_locations_set(user=clerk, locations=[places["s1"]])
    clerk.is_active = False
    assert location_ids_for(clerk) == [] and location_ids_for(AnonymousUser()) == []


def test_a_supplier_location_is_nobodys_workplace(clerk, places):
    with pytest.raises(InvalidAssignment) as refused:
        user_locations_set(user=clerk, locations=[places["s1"], places["sup"]])
    assert "ACME" in refused.value.detail
    assert not LocationMember.objects.exists()


def test_the_database_holds_one_row_per_user_and_location(clerk, places):
    LocationMember.objects.create(user=clerk, location=places["s1"])
    with pytest.raises(IntegrityError), transaction.atomic():
        LocationMember.objects.create(user=clerk, location=places["s1"])


def test_scoping_keeps_rows_at_the_users_locations_from_either_end(clerk, places):
    hood = ItemFactory(sku="HOOD-M")
    for place in ("s1", "s2", "w1"):
        stock(hood, places[place], 5)
    to_s1 = transfer_create(source=places["w1"], destination=places["s1"], lines=[TransferLineSpec(hood, 1)], actor="t")
    transfer_create(source=places["w1"], destination=places["s2"], lines=[TransferLineSpec(hood, 1)], actor="t")
    user_locations_set(user=clerk, locations=[places["s1"]])
    levels = scope_to_locations(StockLevel.objects.all(), clerk)
    assert [level.location.code for level in levels] == ["S1"]
    assert set(scope_to_locations(Movement.objects.all(), clerk).values_list("location__code", flat=True)) == {"S1"}
    assert list(scope_to_locations(Transfer.objects.all(), clerk, ("source", "destination"))) == [to_s1]
    user_locations_set(user=clerk, locations=[])
    assert not scope_to_locations(StockLevel.objects.all(), clerk).exists()


@pytest.mark.django_db(transaction=True)
def test_two_merchants_setting_one_users_locations_at_once_leave_one_of_the_two_sets(django_user_model):
    """The user's row is locked: the second set waits for the first and then replaces it whole."""
    clerk = django_user_model.objects.create_user(username="clerk", password="pw-clerk-1", is_staff=True)
    s1, s2, w1 = (LocationFactory(code=code, kind=Location.Kind.STORE) for code in ("S1", "S2", "W1"))
    first_holds_lock = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic():
                user_locations_set(user=clerk, locations=[s1, w1])
                first_holds_lock.set()
                release.wait(5)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)
        finally:
            connection.close()

    def second() -> None:
        try:
            user_locations_set(user=clerk, locations=[s2])
        except BaseException as err:  # pragma: no cover
            errors.append(err)
        finally:
            connection.close()

    one = threading.Thread(target=first)
    one.start()
    assert first_holds_lock.wait(5)
    two = threading.Thread(target=second)
    two.start()
    two.join(0.5)
    assert two.is_alive()  # waiting for the first merchant's lock
    release.set()
    one.join(5)
    two.join(5)
    assert errors == []
    assert codes(user_locations(clerk)) == ["S2"]
