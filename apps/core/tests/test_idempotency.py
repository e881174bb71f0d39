"""Idempotent calls: replay returns the first answer; another body with the key is refused."""

from __future__ import annotations

import pytest

from apps.core.errors import Conflict, IdempotencyKeyReused, InvalidIdempotencyKey
from apps.core.idempotency import idempotent_call, request_fingerprint
from apps.core.models import IdempotencyRecord

pytestmark = pytest.mark.django_db


def fp(body):
    return request_fingerprint(method="POST", path="/api/v1/orders/", body=body)


def test_replay_returns_first_answer_and_its_work_stands_once():
    from apps.catalog.models import Location

    def handler():
        location = Location.objects.create(code=f"L{Location.objects.count()}", name="x")
        return 201, {"id": location.pk, "code": location.code}

    first = idempotent_call(scope="channel:1", key="k1", fingerprint=fp({"a": 1}), handler=handler)
    again = idempotent_call(scope="channel:1", key="k1", fingerprint=fp({"a": 1}), handler=handler)
    assert first[2] is False and again == (first[0], first[1], True)
    # The replay's own work was rolled back: one location, the first one.
    assert list(Location.objects.values_list("code", flat=True)) == ["L0"]


def test_same_key_other_body_is_refused():
    idempotent_call(scope="channel:1", key="k1", fingerprint=fp({"a": 1}), handler=lambda: (201, {}))
    with pytest.raises(IdempotencyKeyReused):
        idempotent_call(scope="channel:1", key="k1", fingerprint=fp({"a": 2}), handler=lambda: (201, {}))


def test_keys_are_scoped_per_owner():
    idempotent_call(scope="channel:1", key="k1", fingerprint=fp({"a": 1}), handler=lambda: (201, {"who": 1}))
    status, body, replayed = idempotent_call(
        scope="channel:2", key="k1", fingerprint=fp({"a": 2}), handler=lambda: (201, {"who": 2})
    )
    assert (status, body, replayed) == (201, {"who": 2}, False)


def test_refusals_are_remembered_and_replayed():
    def refuse():
        raise Conflict("no stock", lines=[{"sku": "A"}])

    status, body, _ = idempotent_call(scope="c", key="k", fingerprint=fp({}), handler=refuse)
    assert status == 409 and body["code"] == "conflict" and body["lines"] == [{"sku": "A"}]
    assert idempotent_call(scope="c", key="k", fingerprint=fp({}), handler=lambda: (201, {}))[:2] == (409, body)


def test_failed_handler_leaves_no_record():
    def crash():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        idempotent_call(scope="c", key="k", fingerprint=fp({}), handler=crash)
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("key", ["", "x" * 201])
def test_key_length_is_checked(key):
    with pytest.raises(InvalidIdempotencyKey):
        idempotent_call(scope="c", key=key, fingerprint=fp({}), handler=lambda: (201, {}))
