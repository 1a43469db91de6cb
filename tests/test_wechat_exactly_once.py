"""10,000 distinct callbacks, each delivered three times from concurrent threads: one effect each."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from app.core import inbox
from app.core.db import db
from app.members.models import Member, WechatIdentity
from app.points.models import PointEntry
from tests import factories
from tests.wechat_helpers import APP_ID, Callback, event_xml, text_xml

pytestmark = [pytest.mark.postgres, pytest.mark.committed]

MEMBERS, TEXTS, CLICKS, NEWCOMERS = 50, 8_000, 1_000, 1_000


def test_every_effect_happens_exactly_once(fakes, app, http_mock):
    from app.wechat import clients
    from tests.wechat_helpers import SentMessages

    clients.forget_clients(app)
    sent = SentMessages(fakes.official_account)
    with app.app_context():
        factories.staff(factories.dealer(code="D0101"), code="SA0101")
        for i in range(MEMBERS):
            member = factories.member(status="active")
            db.session.add(
                WechatIdentity(
                    app_kind="official", app_id=APP_ID, openid=f"o-known-{i}", member_id=member.id, following=True
                )
            )
        db.session.commit()

    base = int(time.time())
    bodies = [text_xml(f"o-known-{i % MEMBERS}", "积分", msg_id=10**12 + i) for i in range(TEXTS)]
    bodies += [
        event_xml(f"o-known-{i % MEMBERS}", "CLICK", create_time=base + i // MEMBERS, EventKey="my_tier")
        for i in range(CLICKS)
    ]
    bodies += [
        event_xml(f"o-newcomer-{i}", "subscribe", create_time=base, EventKey="qrscene_adv:SA0101")
        for i in range(NEWCOMERS)
    ]
    assert len(bodies) == 10_000
    deliveries = [body for body in bodies for _ in range(3)]
    random.Random(3).shuffle(deliveries)

    def deliver(body: str) -> int:
        return Callback(app.test_client()).post(body).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(deliver, deliveries))
    assert set(statuses) == {200}

    with app.app_context():
        count = db.session.scalar
        assert count(sa.select(sa.func.count()).select_from(inbox.InboundEvent)) == 10_000
        assert count(sa.select(sa.func.count()).where(inbox.InboundEvent.status != "processed")) == 0
        assert count(sa.select(sa.func.count()).select_from(Member)) == MEMBERS + NEWCOMERS
        assert count(sa.select(sa.func.count()).where(Member.enrollment_channel == "advisor_qr")) == NEWCOMERS
        welcome = count(sa.select(sa.func.count()).where(PointEntry.rule_code == "welcome_gift"))
        assert welcome == NEWCOMERS
        assert count(sa.select(sa.func.count()).select_from(WechatIdentity)) == MEMBERS + NEWCOMERS
    welcomes = [m["touser"] for m in sent.custom]
    assert len(welcomes) == len(set(welcomes)) == NEWCOMERS  # one welcome message each
