"""Care tells a referrer how their friend is getting on and when a referral reward was credited."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
import time_machine

from app.care import notify
from app.care.models import Notification
from app.care.rules import category_of
from app.core import events
from app.core.clock import to_business, utcnow
from app.core.db import db
from app.core.events import ReferralMilestoneReached, ReferralRewardCredited
from app.points.models import PointEntry
from app.referrals import milestones
from tests import factories
from tests.referral_helpers import newcomer, refer
from tests.test_care_planning import follower, local, sent_templates

PRICE = 20_000_000


def rows(kind: str) -> list[Notification]:
    return list(db.session.scalars(sa.select(Notification).where(Notification.kind == kind).order_by(Notification.id)))


def test_a_friends_milestone_is_one_notification_even_if_published_twice_and_reads_masked_in_chinese(app_ctx, fakes):
    referrer, friend = follower(), factories.member(name="王小明")
    with time_machine.travel(local(2026, 12, 2, 10), tick=False):
        for _ in range(2):
            events.publish(ReferralMilestoneReached(31, referrer.id, friend.id, "test_drive", utcnow()))
        notify.send_due()
    [row] = rows("referral_milestone")
    assert (row.member_id, row.period, row.status) == (referrer.id, "31:test_drive", "sent")
    assert row.payload == {"referral_id": 31, "referee_member_id": friend.id, "milestone": "test_drive"}
    data = sent_templates(fakes)["referral-milestone-template"]
    assert data["first"]["value"] == "您推荐的好友有了新进展。"
    assert data["keyword1"]["value"] == "王**"
    assert data["keyword2"]["value"] == "已试驾"


def test_a_cancelled_order_is_not_announced(app_ctx):
    referrer, friend = follower(), factories.member()
    events.publish(ReferralMilestoneReached(32, referrer.id, friend.id, "cancelled", utcnow()))
    assert rows("referral_milestone") == []


def test_referral_kinds_are_service_information(app_ctx):
    assert category_of("referral_milestone") == category_of("referral_reward") == "service"


def test_a_delivery_reward_is_announced_once_with_its_points_and_the_date_they_become_spendable(app_ctx, fakes):
    factories.dealer(code="D0101")
    referrer, friend = follower(), newcomer(name="李四")
    with time_machine.travel(local(2026, 12, 2, 10), tick=False):
        refer(referrer, friend)
        for _ in range(2):  # the DMS sends the delivery again: rewarded and announced once
            milestones.delivery(friend.phone, order_no="SO-CARE", model_code="MAGOTAN", price_fen=PRICE, at=utcnow())
        notify.send_due()
    rewarded = rows("referral_reward")
    [reward] = [r for r in rewarded if r.payload["milestone"] == "delivery"]
    period = f"{reward.payload['referral_id']}:delivery"
    assert (reward.member_id, reward.period, reward.status) == (referrer.id, period, "sent")
    credited = db.session.scalar(
        sa.select(sa.func.sum(PointEntry.points)).where(
            PointEntry.member_id == referrer.id,
            PointEntry.source_type == "referral.delivered",
            PointEntry.currency == "reward",
        )
    )
    assert credited and reward.payload["reward_points"] == credited
    available = dt.datetime.fromisoformat(reward.payload["available_at"])
    assert available > local(2026, 12, 2, 10) + dt.timedelta(days=20)  # the cooling period
    assert [r.payload["milestone"] for r in rows("referral_milestone")] == ["lead", "delivery"]
    sent = fakes.official_account.templates()
    [data] = [call["data"] for call in sent if call["template_id"] == "referral-reward-template"][-1:]
    assert data["first"]["value"] == "您的推荐奖励已到账。"
    assert data["keyword1"]["value"] == f"{credited:,} 积分"
    assert data["keyword2"]["value"] == to_business(available).date().isoformat()


def test_a_reward_without_reward_points_is_not_announced(app_ctx):
    referrer = follower()
    events.publish(ReferralRewardCredited(33, referrer.id, "order", 0, 500, utcnow()))
    assert rows("referral_reward") == []
