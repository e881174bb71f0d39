"""Which locations a user may see and work at: every one, or only those assigned to them.

Superusers and holders of ``catalog.view_all_locations`` (the Merchant and Viewer roles, see
``apps/staff/roles.py``) see every location. Everyone else (store staff) sees only the locations
a merchant assigned to them (``LocationMember``); none assigned means none. The back office
scopes its stock pages with these reads (``admin_stock.StockWorkPlaces``), the staff pages and
the staff API do the same.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, Q, QuerySet

from apps.catalog.models import Location, LocationMember

ALL_LOCATIONS_PERMISSION = "catalog.view_all_locations"

M = TypeVar("M", bound=Model)


def sees_all_locations(user: Any) -> bool:
    """True when the user is not limited to assigned locations."""
    if not getattr(user, "is_active", False):
        return False
    return bool(user.is_superuser or user.has_perm(ALL_LOCATIONS_PERMISSION))


def location_ids_for(user: Any) -> list[int] | None:
    """The ids of the locations the user is limited to, or None when they see every location."""
    if sees_all_locations(user):
        return None
    if not getattr(user, "is_active", False) or user.pk is None:
        return []
    return list(LocationMember.objects.filter(user_id=user.pk).values_list("location_id", flat=True))


def locations_for(user: Any) -> QuerySet[Location]:
    """The locations the user may see and work at."""
    ids = location_ids_for(user)
    return Location.objects.all() if ids is None else Location.objects.filter(pk__in=ids)


def location_condition(user: Any, lookups: str | tuple[str, ...] = "location") -> Q | None:
    """A filter for rows whose location (any of ``lookups``) the user sees; None when they see every one.

    Usable inside an aggregate (``Sum(..., filter=...)``) too: with no location assigned it matches
    no row (ids are positive) rather than making the whole query empty.
    """
    ids = location_ids_for(user)
    if ids is None:
        return None
    condition = Q()
    for name in (lookups,) if isinstance(lookups, str) else lookups:
        condition |= Q(**{f"{name}__in": ids or [0]})
    return condition


def scope_to_locations(queryset: QuerySet[M], user: Any, lookups: str | tuple[str, ...] = "location") -> QuerySet[M]:
    """Rows of ``queryset`` whose location (any of ``lookups``, e.g. a transfer's two ends) the user sees."""
    condition = location_condition(user, lookups)
    return queryset if condition is None else queryset.filter(condition)


def user_locations(user: Any) -> QuerySet[Location]:
    """The locations assigned to the user (what the user admin shows), whatever else they may see."""
    return Location.objects.filter(members__user_id=user.pk).order_by("code")
