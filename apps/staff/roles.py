"""The three roles of the back office, defined once here.

- **Merchant**: everything in Stockroom's own apps, and may see the users (to assign store staff).
- **Store staff**: receive, count, transfer and adjust stock, and see stock, of the locations
  assigned to them only (``apps.catalog.access``); read the catalog.
- **Viewer**: reads everything, changes nothing.

A data migration (``staff/0002_roles``) makes the groups, and every ``migrate`` applies these
definitions again (``receivers.roles_after_migrate``), so the groups get the permissions of models
added later and stay what this module says; a merchant who wants another mix makes a group of
their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group, Permission

MERCHANT = "Merchant"
STORE_STAFF = "Store staff"
VIEWER = "Viewer"

# Stockroom's own apps; the demo's baseline table and third-party plumbing are not business data.
OUR_APPS = frozenset({"core", "catalog", "channels", "orders", "suppliers", "forecasting", "staff"})

# What store staff read in the catalog, and the stock work they do there. A document's line
# models (``receiptline`` of ``receipt``) come with it: the admin edits them as inline rows.
STORE_STAFF_READS = frozenset({"item", "product", "productcomponent", "location", "stocklevel", "movement"})
STORE_STAFF_WORK = ("receipt", "transfer", "adjustment", "stockcount")


def _split(codename: str) -> tuple[str, str]:
    action, _, model = codename.partition("_")
    return action, model


def _merchant(app_label: str, codename: str) -> bool:
    return app_label in OUR_APPS or (app_label, codename) == ("auth", "view_user")


def _store_staff(app_label: str, codename: str) -> bool:
    if app_label != "catalog" or codename == "view_all_locations":
        return False
    action, model = _split(codename)
    if model in STORE_STAFF_READS:
        return action == "view"
    for document in STORE_STAFF_WORK:
        if model == document:
            return action in {"add", "change", "view"}
        if model.startswith(document):  # its lines: rows are added and removed on a draft
            return action in {"add", "change", "delete", "view"}
    return False


def _viewer(app_label: str, codename: str) -> bool:
    return app_label in OUR_APPS and _split(codename)[0] == "view"


@dataclass(frozen=True)
class Role:
    name: str
    summary: str
    grants: Callable[[str, str], bool]  # (app_label, codename) -> whether the role holds it


ROLES = (
    Role(MERCHANT, "Everything in Stockroom; sees the users to assign store staff to stores.", _merchant),
    Role(STORE_STAFF, "Receives, counts, transfers and sees stock at their own locations only.", _store_staff),
    Role(VIEWER, "Reads everything, changes nothing.", _viewer),
)


def roles_apply(*, group_model: Any = Group, permission_model: Any = Permission) -> dict[str, int]:
    """Make each role's group hold exactly the permissions it grants; {group name: permission count}.

    The models are parameters so that the data migration can pass its historical ones.
    """
    permissions = list(permission_model.objects.values_list("pk", "content_type__app_label", "codename"))
    applied = {}
    for role in ROLES:
        group, _ = group_model.objects.get_or_create(name=role.name)
        granted = [pk for pk, app_label, codename in permissions if role.grants(app_label, codename)]
        group.permissions.set(granted)
        applied[role.name] = len(granted)
    return applied


def roles_remove(*, group_model: Any = Group) -> None:
    """Undo the data migration: the three groups go (their users keep their other groups)."""
    group_model.objects.filter(name__in=[role.name for role in ROLES]).delete()
