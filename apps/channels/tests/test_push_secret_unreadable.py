"""A push secret no configured key opens (STOCKROOM_SECRETS_KEY changed without a rotation): nothing
is sent unsigned or signed wrong, the work waits, staff get one incident and a clear reason."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.db import transaction

from apps.catalog.models import Incident
from apps.catalog.signals import Tier
from apps.channels.models import Channel, SyncWork
from apps.channels.services.connection import channel_connection_test
from apps.channels.services.push import channel_push
from apps.channels.services.work import sync_work_enqueue
from apps.channels.tests.factories import channel_selling, listing, shop

pytestmark = pytest.mark.django_db

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture
def web(simulator, settings):
    settings.STOCKROOM_SECRETS_KEY = OLD
    s = shop(hoodies=30, caps=10)
    sim = simulator(secret="s3cret")
    channel = channel_selling("web", [s.warehouse], push_url=sim.url, secret="s3cret")
    lst = listing(channel, s.single, "W-SINGLE")
    with transaction.atomic():
        sync_work_enqueue(listing_ids=[lst.pk], priority=Tier.SALE, reason="test")
    return sim, channel


def test_pushes_stop_with_one_incident_until_the_key_is_back(web, settings):
    sim, channel = web
    settings.STOCKROOM_SECRETS_KEY = NEW
    for _ in range(3):
        report = channel_push(channel_id=channel.pk)
        assert report.requests == 0
    assert sim.shown("W-SINGLE") is None and sim.unauthorized == 0  # nothing left unsigned or signed wrong
    assert SyncWork.objects.filter(channel=channel).count() == 1  # the work waits, it is not dropped
    incident = Incident.objects.get(kind=Incident.Kind.UNREADABLE_SECRET)
    assert incident.reference == "secret:channel web" and "s3cret" not in incident.detail
    test = channel_connection_test(channel=Channel.objects.get(pk=channel.pk))
    assert not test.ok and "cannot be decrypted" in test.message and "s3cret" not in test.message
    assert Incident.objects.filter(kind=Incident.Kind.UNREADABLE_SECRET).count() == 1

    settings.STOCKROOM_SECRETS_KEY = f"{NEW},{OLD}"  # the old key back: the waiting push goes out
    assert channel_push(channel_id=channel.pk).updates == 1
    assert sim.shown("W-SINGLE") == 30
