"""Nobody hands out or takes away a token with more rights than their own: a Merchant tries to
mint and revoke tokens of the superuser and of a richer user, in the admin and on the command line."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from rest_framework.test import APIClient

from apps.core.errors import Forbidden
from apps.core.models import ApiToken
from apps.core.services import token_create, token_revoke
from apps.staff.roles import MERCHANT, STORE_STAFF, VIEWER

pytestmark = pytest.mark.django_db


def _user(django_user_model, username: str, role: str | None = None, *, superuser: bool = False, extra=()):
    user = django_user_model.objects.create_user(
        username=username, password=f"pw-{username}-1", is_staff=True, is_superuser=superuser
    )
    if role:
        user.groups.add(Group.objects.get(name=role))
    for codename in extra:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return django_user_model.objects.get(pk=user.pk)  # no cached permissions


@pytest.fixture
def people(django_user_model):
    return {
        "root": _user(django_user_model, "root", superuser=True),
        "mona": _user(django_user_model, "mona", MERCHANT),
        "max": _user(django_user_model, "max", MERCHANT),
        "vera": _user(django_user_model, "vera", VIEWER),
        "sam": _user(django_user_model, "sam", STORE_STAFF),
        # A Merchant who may also edit users: a right mona does not hold.
        "rich": _user(django_user_model, "rich", MERCHANT, extra=["change_user"]),
    }


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def works(raw: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client.get("/api/v1/whoami/").status_code == 200


def owners() -> set[str]:
    return set(ApiToken.objects.filter(user__isnull=False).values_list("user__username", flat=True))


# --- the admin ---------------------------------------------------------------------------------


def test_the_add_form_offers_a_merchant_only_users_with_no_more_rights_than_theirs(people):
    page = logged_in(people["mona"]).get("/admin/core/apitoken/add/")
    assert page.status_code == 200
    offered = {user.username for user in page.context["form"].fields["user"].queryset}
    assert offered == {"mona", "max", "vera", "sam"}  # not root (superuser), not rich (edits users)


@pytest.mark.parametrize("target", ["root", "rich"])
def test_a_merchant_posting_the_add_form_for_a_richer_user_gets_no_token(people, target):
    response = logged_in(people["mona"]).post(
        "/admin/core/apitoken/add/", {"user": people[target].pk, "name": "mine now"}
    )
    assert response.status_code == 200 and "key" not in response.context
    assert "Select a valid choice" in response.content.decode()
    assert owners() == set()


@pytest.mark.parametrize("target", ["mona", "max", "vera", "sam"])
def test_a_merchant_makes_tokens_for_themself_and_poorer_users_in_the_admin(people, target):
    response = logged_in(people["mona"]).post("/admin/core/apitoken/add/", {"user": people[target].pk})
    assert response.status_code == 200 and works(response.context["key"])
    assert owners() == {target}


def test_a_superuser_may_make_a_token_for_anyone_in_the_admin(people, django_user_model):
    other_root = _user(django_user_model, "root2", superuser=True)
    client = logged_in(people["root"])
    form = client.get("/admin/core/apitoken/add/").context["form"]
    offered = {user.username for user in form.fields["user"].queryset}
    assert offered == {"root", "root2", "mona", "max", "vera", "sam", "rich"}
    response = client.post("/admin/core/apitoken/add/", {"user": other_root.pk})
    assert works(response.context["key"])


def test_a_merchant_cannot_revoke_the_superusers_or_a_richer_users_tokens(people):
    keys = {name: token_create(staff_username=name) for name in ("root", "rich", "vera", "mona")}
    tokens = list(ApiToken.objects.values_list("pk", flat=True))
    response = logged_in(people["mona"]).post(
        "/admin/core/apitoken/", {"action": "revoke", "_selected_action": tokens}, follow=True
    )
    said = [str(message) for message in response.context["messages"]]
    assert "Revoked 2 token(s)." in said
    assert any(text.startswith("Not revoked (their users hold rights you do not)") for text in said)
    assert {name: works(raw) for name, raw in keys.items()} == {
        "root": True,
        "rich": True,
        "vera": False,
        "mona": False,
    }


def test_tokens_are_never_changed_or_deleted_in_the_admin_by_a_merchant(people):
    token_create(staff_username="root")
    token = ApiToken.objects.get()
    client = logged_in(people["mona"])
    assert client.post(f"/admin/core/apitoken/{token.pk}/change/", {"user": people["mona"].pk}).status_code == 403
    assert client.post(f"/admin/core/apitoken/{token.pk}/delete/", {"post": "yes"}).status_code == 403
    deleting = {"action": "delete_selected", "_selected_action": [token.pk], "post": "yes"}
    client.post("/admin/core/apitoken/", deleting)
    token.refresh_from_db()
    assert token.user == people["root"] and token.revoked_at is None


# --- the service (what every caller goes through) ----------------------------------------------


def test_the_service_refuses_a_merchant_for_the_superuser_and_a_non_superuser_with_every_right(
    people, django_user_model
):
    with pytest.raises(Forbidden, match="Only a superuser"):
        token_create(staff_username="root", by=people["mona"])
    almighty = _user(django_user_model, "almighty")
    almighty.user_permissions.set(Permission.objects.all())
    almighty = django_user_model.objects.get(pk=almighty.pk)
    with pytest.raises(Forbidden):
        token_create(staff_username="root", by=almighty)
    token_create(staff_username="root")
    with pytest.raises(Forbidden):
        token_revoke(token=ApiToken.objects.get(), by=people["mona"])
    assert works(token_create(staff_username="rich", by=almighty))  # holds every right rich holds


# --- the command on the server -----------------------------------------------------------------


def test_the_command_acting_as_a_merchant_is_refused_for_richer_users(people, capsys):
    for target in ("root", "rich"):
        with pytest.raises(CommandError, match="may"):
            call_command("create_token", "--staff", target, "--as", "mona")
    assert owners() == set()
    call_command("create_token", "--staff", "vera", "--as", "mona")
    assert works(capsys.readouterr().out.strip())


def test_the_command_mints_a_superuser_token_only_when_the_operator_says_so(people, capsys):
    with pytest.raises(CommandError, match="--operator"):
        call_command("create_token", "--staff", "root")
    assert owners() == set()
    call_command("create_token", "--staff", "root", "--operator")
    assert works(capsys.readouterr().out.strip())
    call_command("create_token", "--staff", "rich")  # the operator, for a non-superuser
    assert works(capsys.readouterr().out.strip())
