"""The per-sender limit's local front: far below the limit a hit costs no Redis round trip (its
count follows in the background), near it every hit asks Redis, and the limit still holds."""

from __future__ import annotations

import contextlib

import pytest

from app.core import ratelimit
from app.core.ratelimit import LocalFront, OneTripFixedWindow, limiter


@pytest.fixture
def strategy(app, app_ctx) -> OneTripFixedWindow:
    strategy = limiter.limiter
    if not isinstance(strategy, OneTripFixedWindow):
        pytest.skip("the front sits on the Redis storage (this run has the in-memory fallback)")
    return strategy


def _count_in_redis(strategy: OneTripFixedWindow, limit: str, key: str) -> int:
    redis_key = strategy.storage.prefixed_key(ratelimit._parsed(limit).key_for("ratelimit", "test", key))
    return int(strategy.storage.get_connection().get(redis_key) or 0)


@pytest.fixture
def redis_calls(strategy, monkeypatch) -> list[int]:
    """The synchronous round trips (the script run before answering), by their cost."""
    calls: list[int] = []
    script = strategy._script

    def counting(keys, args, **kwargs):
        calls.append(args[1])
        return script(keys, args, **kwargs)

    monkeypatch.setattr(strategy, "_script", counting)
    return calls


def test_far_below_the_limit_hits_wait_for_no_round_trip_and_reach_redis_at_the_flush(strategy, redis_calls):
    assert all(ratelimit.allow("test", "o-calm", "10/minute") for _ in range(5))
    assert redis_calls == []
    strategy.front.flush()
    assert _count_in_redis(strategy, "10/minute", "o-calm") == 5


def test_from_half_the_limit_every_hit_asks_redis_and_the_limit_holds_exactly(strategy, redis_calls):
    answers = [ratelimit.allow("test", "o-chatty", "6/minute") for _ in range(9)]
    assert answers == [True] * 6 + [False] * 3
    assert len(redis_calls) == 6  # the 4th hit on (it brings any still pending along)
    assert sum(redis_calls) in (6, 9)  # 9: the 3 local ones had not been flushed yet
    strategy.front.flush()
    assert _count_in_redis(strategy, "6/minute", "o-chatty") == 9  # every hit counts, refused or not


def test_what_other_processes_counted_is_learned_at_the_flush(strategy):
    """Two fronts on one Redis stand for two gunicorn workers."""
    other = LocalFront(strategy)
    assert [other.hit(ratelimit._parsed("4/minute"), "ratelimit", "test", "o-both") for _ in range(2)] == [True] * 2
    other.flush()
    answers = [ratelimit.allow("test", "o-both", "4/minute") for _ in range(4)]
    assert answers == [True, True, False, False]  # the third asked Redis: 2 there + 3 here > 4
    strategy.front.flush()
    assert _count_in_redis(strategy, "4/minute", "o-both") == 6


def test_it_fails_open_and_drops_counts_it_cannot_send(strategy, monkeypatch):
    def down(*_args, **_kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(strategy, "_script", down)
    monkeypatch.setattr(strategy.front, "_send", down)
    assert all(ratelimit.allow("test", "o-outage", "4/minute") for _ in range(6))  # served, as before
    with contextlib.suppress(ConnectionError):  # unless the background thread tried first
        strategy.front.flush()
    assert all(not t.pending and not t.in_flight for t in strategy.front._tallies.values())  # dropped
    assert strategy.front._thread is not None and strategy.front._thread.is_alive()  # and it lives on


def test_a_window_over_in_redis_is_forgotten_here(strategy, redis_calls):
    limit = "4/second"
    assert [ratelimit.allow("test", "o-later", limit) for _ in range(5)] == [True] * 4 + [False]
    tally = next(t for t in strategy.front._tallies.values() if t.item == ratelimit._parsed(limit))
    tally.expires = 0.0  # as if the second were over (Redis's key expires with it)
    strategy.storage.get_connection().delete(
        strategy.storage.prefixed_key(ratelimit._parsed(limit).key_for("ratelimit", "test", "o-later"))
    )
    calls_before = len(redis_calls)
    assert ratelimit.allow("test", "o-later", limit)
    assert len(redis_calls) == calls_before  # far below the limit again: no round trip


def test_the_background_flush_sends_and_a_dropped_front_leaves_nothing_behind(strategy):
    """One fork and one exit handler serve every front; a front's flusher thread sends its counts on
    its own, holds no reference to it, and ends once the front is gone (apps built and dropped in tests)."""
    import gc
    import time
    import weakref

    front = LocalFront(strategy)
    assert front in ratelimit._LIVE_FRONTS
    assert front.hit(ratelimit._parsed("10/minute"), "ratelimit", "test", "o-dropped")
    thread = front._thread
    assert thread is not None
    deadline = time.monotonic() + 5
    while _count_in_redis(strategy, "10/minute", "o-dropped") != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _count_in_redis(strategy, "10/minute", "o-dropped") == 1  # sent without an explicit flush
    gone = weakref.ref(front)
    del front
    gc.collect()
    assert gone() is None  # nothing (no thread, no handler) kept it alive
    thread.join(timeout=5)
    assert not thread.is_alive()
