"""Assigning users to the locations they work at (store staff see and work at those only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from apps.catalog.errors import InvalidAssignment
from apps.catalog.locks import user_for_update
from apps.catalog.models import Location, LocationMember


@transaction.atomic
def user_locations_set(*, user: Any, locations: Iterable[Location]) -> list[Location]:
    """Make ``locations`` exactly the locations the user is assigned to; returns them by code.

    A supplier's drop-ship location is nobody's workplace (its stock follows its feed): refused.
    """
    wanted = {location.pk: location for location in locations}
    suppliers = sorted(loc.code for loc in wanted.values() if loc.kind == Location.Kind.SUPPLIER)
    if suppliers:
        raise InvalidAssignment(
            f"{', '.join(suppliers)}: a supplier's drop-ship location is nobody's workplace.", codes=suppliers
        )
    user_for_update(user.pk)
    current = set(LocationMember.objects.filter(user_id=user.pk).values_list("location_id", flat=True))
    LocationMember.objects.filter(user_id=user.pk).exclude(location_id__in=list(wanted)).delete()
    LocationMember.objects.bulk_create(
        [LocationMember(user_id=user.pk, location_id=pk) for pk in sorted(set(wanted) - current)]
    )
    return sorted(wanted.values(), key=lambda location: location.code)
