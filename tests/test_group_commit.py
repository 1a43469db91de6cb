"""Group commit of the inbox's hot path: concurrent stores share INSERTs, each keeps its own answer."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from app.core import inbox
from app.core.clock import utcnow
from app.core.db import closed_by_server, db
from app.core.group_commit import GroupInserter

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def _store(key: str, nonce: str) -> int | None:
    return inbox.store_event_at_once(
        source="wechat", external_id=key, type="event.test", body=key.encode(), occurred_at=utcnow(), signed_nonce=nonce
    )


def test_concurrent_stores_share_statements_and_each_key_is_inserted_once(app, monkeypatch):
    statements: list[int] = []
    original = GroupInserter._write_together

    def counting(self, connection, batch):
        statements.append(len(batch))
        return original(self, connection, batch)

    monkeypatch.setattr(GroupInserter, "_write_together", counting)
    keys = [f"k{i % 150}" for i in range(450)]  # each key three times, as WeChat retries
    start = threading.Barrier(16)

    def store(i: int) -> tuple[str, int | None]:
        if i < 16:
            start.wait()
        with app.app_context():
            return keys[i], _store(keys[i], f"n{keys[i]}")  # a retry carries the same nonce

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(store, range(len(keys))))

    winners = [key for key, event_id in results if event_id is not None]
    assert sorted(winners) == sorted(set(keys))  # exactly one caller per key got the new id
    with app.app_context():
        rows = db.session.execute(sa.select(inbox.InboundEvent.id, inbox.InboundEvent.external_id)).all()
        assert len(rows) == 150
        assert {event_id for _, event_id in results if event_id is not None} == {row.id for row in rows}
        assert db.session.get(inbox.InboundEvent, rows[0].id).body == rows[0].external_id.encode()  # decrypts
    assert sum(statements) == len(keys) and max(statements) > 1  # batches formed, every row written once


def test_a_replayed_nonce_in_a_batch_fails_only_its_own_request(app):
    """Row by row after the shared INSERT fails: the replay is refused, the others are stored."""
    with app.app_context():
        assert _store("first", "nonce-1") is not None
    inserter = inbox._group_inserter(db.engine)
    leading, release = threading.Event(), threading.Event()
    original_write = inserter._write

    def held_first_write(batch):  # hold the lead so that the next requests queue into one batch
        if not release.is_set():
            leading.set()
            release.wait(10)
        return original_write(batch)

    def store_in_app(key: str, nonce: str) -> int | None:
        with app.app_context():
            return _store(key, nonce)

    inserter._write = held_first_write
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            blocker = pool.submit(store_in_app, "blocker", "nonce-b")
            assert leading.wait(10)
            queued = [pool.submit(store_in_app, *args) for args in (("second", "nonce-2"), ("replay", "nonce-1"))]
            queued.append(pool.submit(store_in_app, "third", "nonce-3"))
            while len(inserter._queue) < 3:
                threading.Event().wait(0.01)
            release.set()
            assert blocker.result() is not None
            second, replay, third = (future.exception() or future.result() for future in queued)
    finally:
        del inserter._write
    assert isinstance(second, int) and isinstance(third, int)
    assert isinstance(replay, inbox.ReplayedNonce)
    with app.app_context():
        stored = set(db.session.scalars(sa.select(inbox.InboundEvent.external_id)))
    assert stored == {"first", "blocker", "second", "third"}


def test_the_leaders_connection_is_replaced_once_the_server_has_closed_it(app):
    """The leaders keep one connection between batches; a restart or ``pg_terminate_backend``
    costs no request: the next batch sees it closed (no round trip) and takes a fresh one."""
    with app.app_context():
        assert _store("before", "nonce-before") is not None
        inserter = inbox._group_inserter(db.engine)
        held = inserter._held.driver_connection
        with db.engine.begin() as connection:
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": held.info.backend_pid})
        deadline = time.monotonic() + 10
        while not closed_by_server(held) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _store("after", "nonce-after") is not None
        assert inserter._held.driver_connection is not held
        assert set(db.session.scalars(sa.select(inbox.InboundEvent.external_id))) == {"before", "after"}
