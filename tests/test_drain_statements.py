"""The inbox drain's enrollments (a launch's advisor-QR scans), counted in database statements (not
timed), and its batches held to exactly-once: a failing event does not take its batch-mates down,
and a worker killed in the middle of a batch leaves every event of it to be processed once later."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import time

import pytest
import sqlalchemy as sa

from app.care.models import Notification
from app.core import inbox
from app.core.clock import utcnow
from app.core.db import db
from app.crm.models import CrmOutboxEntry
from app.jobs import drain
from app.jobs.drain import drain_inbox
from app.members.models import Member, WechatIdentity
from app.points.models import PointEntry
from tests import factories
from tests.statement_helpers import Statements
from tests.wechat_helpers import event_xml

pytestmark = [pytest.mark.postgres, pytest.mark.committed]

#: Ten advisor-QR scans of newcomers drained in one batch, the batch's transaction up to its commit
#: (BEGIN and COMMIT not counted), through SQLAlchemy: per scan the identity INSERT (following from
#: birth, locked by being new), the member and its account (locked by being new), the identity's
#: member, the welcome gift's idempotency read and the chat reply's notification (6 x 10); per
#: batch the claim, the advisor with their dealer, the member numbers checked at once, the status
#: UPDATE, the audit rows and the CRM outbox's one (6). Before batches: 24 per scan, and BEGIN and
#: COMMIT each.
BATCH_OF_TEN_STATEMENTS = 66
#: The ledger's earning goes through the driver connection: one per scan.
BATCH_OF_TEN_DRIVER_STATEMENTS = 10


@pytest.fixture
def rq_mode(app, monkeypatch):
    """Jobs wait in Redis (as with workers) instead of running after the commit in this process."""
    settings = app.extensions["loyalty.settings"]
    monkeypatch.setitem(app.extensions, "loyalty.settings", dataclasses.replace(settings, JOBS_MODE="rq"))


@pytest.fixture
def advisor(app):
    with app.app_context():
        staff = factories.staff(factories.dealer(code="D0101"), code="SA0101")
        db.session.commit()
        return staff.id


def store_scans(openids: list[str], *, body=None) -> list[int]:
    ids = [
        inbox.store_event(
            source="wechat",
            external_id=f"scan-{openid}",
            type="event.subscribe_scan",
            body=body(openid) if body else event_xml(openid, "subscribe", EventKey="qrscene_adv:SA0101").encode(),
            occurred_at=utcnow(),
        )
        for openid in openids
    ]
    db.session.commit()
    return ids


def count(model, *where) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def test_a_batch_of_enrollments_costs_a_pinned_number_of_statements(app, advisor, rq_mode, monkeypatch):
    with app.app_context():
        store_scans(["o-warm-0"])
        assert drain_inbox("wechat") == 1  # the process's caches (program settings, statements)
        db.session.commit()
        store_scans([f"o-count-{i}" for i in range(10)])
        driver = []
        from app.points.ledger import sql as ledger_sql

        original = ledger_sql._execute
        monkeypatch.setattr(ledger_sql, "_execute", lambda sql, params: driver.append(sql) or original(sql, params))
        with Statements(until_commit=True) as sent:
            assert drain_inbox("wechat") == 10
            db.session.commit()
        assert len(sent) == BATCH_OF_TEN_STATEMENTS, "\n".join(sent)
        assert len(driver) == BATCH_OF_TEN_DRIVER_STATEMENTS
        assert sum(s.startswith("SELECT inbound_events") for s in sent) == 1  # one claim (the empty one is after)
        assert not any("FROM consents" in s or "tier_states" in s for s in sent)  # a newcomer has neither
        assert not any(s.startswith("SELECT point_accounts") for s in sent)  # nor an account to lock

        # Everything an enrollment did before batches, once per scan.
        assert count(Member, Member.enrollment_channel == "advisor_qr", Member.enrolling_staff_id == advisor) == 11
        assert count(WechatIdentity, WechatIdentity.following.is_(True), WechatIdentity.member_id.is_not(None)) == 11
        assert count(PointEntry, PointEntry.source_type == "enrollment.welcome", PointEntry.points == 500) == 11
        assert count(Notification, Notification.kind == "chat_reply", Notification.member_id.is_not(None)) == 11
        assert count(CrmOutboxEntry) >= 11
        assert count(inbox.InboundEvent, inbox.InboundEvent.status == "processed") == 11
        processed = db.session.scalars(sa.select(inbox.InboundEvent)).all()
        assert {event.attempts for event in processed} == {1} and all(event.processed_at for event in processed)
        assert all("500" in (event.outcome or "") for event in processed)


def test_a_failing_event_does_not_take_its_batch_mates_down(app, advisor, caplog):
    caplog.set_level(logging.INFO, logger="app.jobs.drain")
    with app.app_context():
        good = [f"o-good-{i}" for i in range(4)]
        store_scans(good[:2])
        (bad,) = store_scans(["o-bad"], body=lambda openid: b"<xml><MsgType>event</MsgType></xml>")
        store_scans(good[2:])
        assert drain_inbox("wechat") == 5
        db.session.commit()
        failed = db.session.get(inbox.InboundEvent, bad)
        assert (failed.status, failed.attempts) == ("failed", 1) and "MalformedCallback" in failed.last_error
        assert failed.next_attempt_at is not None  # backs off like an event drained alone
        assert count(inbox.InboundEvent, inbox.InboundEvent.status == "processed") == 4
        assert count(Member) == 4 and count(PointEntry) == 4
        assert count(Notification, Notification.kind == "chat_reply") == 4
        assert "taking them one by one" in caplog.text


def _drain_until_paused(app, paused) -> None:
    """A worker whose third enrollment of the batch never returns (it is killed there)."""
    handler = drain._HANDLERS[("wechat", "event.subscribe_scan")]
    calls = []

    def slow(event, body):
        calls.append(event.id)
        outcome = handler(event, body)
        if len(calls) == 3:
            db.session.flush()  # the first three enrollments are written, not committed
            paused.set()
            time.sleep(600)
        return outcome

    drain._HANDLERS[("wechat", "event.subscribe_scan")] = slow
    with app.app_context():
        drain_inbox("wechat")
        db.session.commit()


def test_a_worker_killed_in_the_middle_of_a_batch_leaves_each_event_to_be_processed_once(app, advisor):
    with app.app_context():
        openids = [f"o-killed-{i}" for i in range(6)]
        store_scans(openids)
        db.session.remove()
    context = multiprocessing.get_context("fork")
    paused = context.Event()
    worker = context.Process(target=_drain_until_paused, args=(app, paused))
    worker.start()
    try:
        assert paused.wait(60), "the worker never reached its third enrollment"
        with app.app_context():
            assert count(Member) == 0  # nothing of the batch is visible
            assert count(inbox.InboundEvent, inbox.InboundEvent.status == "received") == 6
            assert inbox.claim_due("wechat", utcnow(), 10) == []  # all six locked by the worker
            db.session.rollback()
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(30)
    assert worker.exitcode == -signal.SIGKILL
    with app.app_context():
        assert drain_inbox("wechat") == 6
        db.session.commit()
        event = inbox.InboundEvent
        assert count(event, event.status == "processed", event.attempts == 1) == 6
        assert count(Member) == 6 and count(WechatIdentity) == 6
        assert count(PointEntry, PointEntry.source_type == "enrollment.welcome") == 6
        assert count(Notification, Notification.kind == "chat_reply") == 6
