"""The pusher lock on real Redis: one holder, renewed only by its own token, lapsing when nobody renews it."""

from __future__ import annotations

import time

import pytest

from apps.channels.limits import PusherLock, redis_client

CHANNEL = 987654


@pytest.fixture(autouse=True)
def short_lock(stockroom_knobs) -> None:
    stockroom_knobs(SYNC_LOCK_TTL_S=0.6, SYNC_LOCK_RENEW_S=0.15)


def test_only_its_holder_renews_or_releases_the_lock() -> None:
    mine, other = PusherLock(CHANNEL), PusherLock(CHANNEL)
    assert mine.acquire() and mine.held()
    assert not other.acquire()
    assert not other.renew() and not other.held()  # a stranger's token extends nothing
    other.release()  # and frees nothing
    assert redis_client().get(mine.key).decode() == mine.token
    assert mine.renew() and mine.held()
    mine.release()
    assert other.acquire()
    other.release()


def test_a_kept_lock_outlives_its_ttl_and_an_unrenewed_one_lapses_within_it() -> None:
    kept, waiting = PusherLock(CHANNEL), PusherLock(CHANNEL)
    assert kept.acquire()
    kept.keep(at_most_s=60)
    time.sleep(3 * 0.6)  # three TTLs: renewed all along
    assert kept.held() and not waiting.acquire()
    kept.release()
    assert waiting.acquire()  # released at once, not at the TTL
    # The holder dies (nobody renews): the lock is free within its TTL, and the old holder knows it lost it.
    started = time.monotonic()
    while not (taker := PusherLock(CHANNEL)).acquire():
        time.sleep(0.02)
    assert time.monotonic() - started <= 0.6 + 0.1
    assert not waiting.held() and not waiting.renew()
    taker.release()


def test_a_stuck_pusher_stops_renewing_after_the_longest_a_push_may_take() -> None:
    stuck, next_one = PusherLock(CHANNEL), PusherLock(CHANNEL)
    assert stuck.acquire()
    stuck.keep(at_most_s=0.4)
    started = time.monotonic()
    while not next_one.acquire():
        time.sleep(0.02)
    assert 0.4 <= time.monotonic() - started <= 0.4 + 0.15 + 0.6 + 0.2
    stuck.release()  # its token is not the lock's any more: the new holder keeps it
    assert redis_client().get(next_one.key).decode() == next_one.token
    next_one.release()
