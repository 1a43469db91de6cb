"""A member's chat message to the service account is an interaction for the lifecycle stage,
stamped on their WeChat identity at most once an hour."""

import datetime as dt

import pytest
import time_machine

from app.care import lifecycle
from app.core.db import db
from app.members import identities
from app.members.models import WechatIdentity
from tests.conftest import run_concurrently
from tests.test_care_planning import NOW, follower, history
from tests.wechat_helpers import APP_ID, Callback, text_xml


def _write(app, openid: str, at: dt.datetime) -> None:
    with time_machine.travel(at, tick=False):
        Callback(app.test_client()).reply(text_xml(openid, "你好"))


def _stamp(member_id: int) -> dt.datetime | None:
    db.session.expire_all()
    identity = db.session.query(WechatIdentity).filter_by(member_id=member_id).one()
    return identity.last_message_at


def test_a_member_who_wrote_last_week_is_not_at_risk(app, app_ctx, fakes):
    writer = follower(enrolled_at=NOW - dt.timedelta(days=200))
    silent = follower(enrolled_at=NOW - dt.timedelta(days=200))
    _write(app, f"o-{writer.id}", NOW - dt.timedelta(days=7))
    lifecycle.judge(NOW)
    assert history(writer.id) == [(None, "growing")]
    assert history(silent.id) == [(None, "churn_risk")]


def test_the_stamp_is_written_at_most_once_an_hour(app, app_ctx, fakes):
    member = follower(enrolled_at=NOW - dt.timedelta(days=500))
    first = NOW - dt.timedelta(hours=3)
    _write(app, f"o-{member.id}", first)
    assert _stamp(member.id) == first
    _write(app, f"o-{member.id}", first + dt.timedelta(minutes=59))
    assert _stamp(member.id) == first  # within the hour: no write
    _write(app, f"o-{member.id}", first + dt.timedelta(minutes=61))
    assert _stamp(member.id) == first + dt.timedelta(minutes=61)


def test_strangers_messages_stamp_nothing(app, app_ctx, fakes):
    _write(app, "o-stranger", NOW)
    identity = identities.find(APP_ID, "o-stranger")
    assert identity is not None and identity.member_id is None and identity.last_message_at is None
    assert identities.record_message(identity, NOW) is False


@pytest.mark.postgres
@pytest.mark.committed
def test_messages_at_once_stamp_once(app):
    """Four messages handled at the same instant by four workers: one write (the conditional UPDATE
    re-reads the row a concurrent writer just stamped)."""
    with app.app_context():
        member = follower(enrolled_at=NOW - dt.timedelta(days=200))
        db.session.commit()
        openid = f"o-{member.id}"

    def stamp(i: int) -> bool:
        with app.app_context():
            identity = identities.find(APP_ID, openid)
            wrote = identities.record_message(identity, NOW + dt.timedelta(seconds=i))
            db.session.commit()
            return wrote

    results = run_concurrently(4, stamp)
    assert sorted(results) == [False, False, False, True], results
    with app.app_context():
        assert NOW <= _stamp(member.id) <= NOW + dt.timedelta(seconds=3)
