"""Exactly-once under concurrency, proven on PostgreSQL with real commits."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app.core import inbox
from app.core.db import db
from app.core.security import sign_timestamped
from app.members.models import Member, Ownership
from app.sync.samples import sample_delivery
from tests import factories
from tests.conftest import DMS_SECRET, run_concurrently

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


@pytest.fixture
def committed_shop(app):
    with app.app_context():
        dealer = factories.dealer(code="D0101")
        factories.staff(dealer, code="SA0101")
        db.session.commit()


def _post(app, body: bytes):
    headers = {"Content-Type": "application/json", **sign_timestamped(DMS_SECRET, body)}
    return app.test_client().post("/api/v1/dms/events", data=body, headers=headers).status_code


def _count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def test_the_same_event_from_20_threads_creates_one_member_and_one_ownership(app, committed_shop):
    body = json.dumps(sample_delivery(phone="13800138000", event_id="dup-storm-1")).encode()
    statuses = run_concurrently(20, lambda _i: _post(app, body))
    assert sorted(statuses) == [200] * 19 + [202]
    assert _count(app, Member) == 1
    assert _count(app, Ownership) == 1
    assert _count(app, inbox.InboundEvent) == 1
    assert _count(app, inbox.InboundEvent, inbox.InboundEvent.status == "processed") == 1


def test_two_cars_for_one_new_buyer_at_once_end_as_one_member_with_two_cars(app, committed_shop):
    bodies = [json.dumps(sample_delivery(phone="13800138777", event_id=f"pair-{i}")).encode() for i in range(2)]
    statuses = run_concurrently(2, lambda i: _post(app, bodies[i]))
    assert statuses == [202, 202]
    # One of them may have lost the race on the phone's unique index; the sweeper retries it.
    with app.app_context():
        from app.jobs.drain import process_inbound_event

        for event_id in db.session.scalars(
            sa.select(inbox.InboundEvent.id).where(inbox.InboundEvent.status != "processed")
        ):
            process_inbound_event(event_id)
            db.session.commit()
    assert _count(app, Member) == 1
    assert _count(app, Ownership, Ownership.ended_on.is_(None)) == 2
    assert _count(app, inbox.InboundEvent, inbox.InboundEvent.status == "processed") == 2
