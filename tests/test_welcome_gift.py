"""One welcome gift: every path that makes someone a member credits the same rule's amount, once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from app import demo
from app.campaigns.signup import enroll_from_campaign
from app.core.clock import utcnow
from app.core.db import db
from app.members import qr_enrollment, registration, services
from app.members.models import Member, WechatIdentity
from app.points.models import PointEntry
from tests import factories
from tests.test_qr_codes_and_notices import campaign
from tests.wechat_helpers import APP_ID

#: The seeded rule ``welcome_gift`` (migration 0002): 500 reward points, funded by the OEM.
WELCOME_POINTS = 500


def follower(openid: str, kind: str = "official") -> WechatIdentity:
    identity = WechatIdentity(app_kind=kind, app_id=APP_ID, openid=openid, following=True)
    db.session.add(identity)
    db.session.flush()
    return identity


def welcome_entries(member_id: int) -> list[int]:
    return list(
        db.session.scalars(
            sa.select(PointEntry.points).where(
                PointEntry.member_id == member_id, PointEntry.rule_code == "welcome_gift"
            )
        )
    )


def by_order_qr() -> tuple[int, Callable[[], object]]:
    buyer = factories.member(status="pre_enrolled")
    token = services.mint_order_token(buyer, vehicle=None, dealer_id=None, staff_id=None, source_event_id=None)
    identity = follower("o-buyer")
    secret = services.issue_order_secret(token)
    scan = lambda: qr_enrollment.activate_by_order_token(secret, identity, utcnow())  # noqa: E731
    assert scan().outcome == "activated"
    return buyer.id, scan


def by_advisor_qr() -> tuple[int, Callable[[], object]]:
    factories.staff(factories.dealer(), code="SA9")
    identity = follower("o-walk-in")
    scan = lambda: qr_enrollment.enroll_from_advisor_qr("SA9", identity, utcnow())  # noqa: E731
    result = scan()
    assert result.outcome == "enrolled" and result.credited_points == WELCOME_POINTS
    return result.member.id, scan


def by_campaign_qr() -> tuple[int, Callable[[], object]]:
    campaign("spring")
    identity = follower("o-campaign")
    scan = lambda: enroll_from_campaign("spring", identity, utcnow())  # noqa: E731
    result = scan()
    assert result.member is not None
    return result.member.id, scan


def by_miniapp_registration() -> tuple[int, Callable[[], object]]:
    identity = follower("o-mini", kind="miniapp")
    join = lambda: registration.register(  # noqa: E731
        identity, policy_version="2026.1", purposes=["service_notifications"], phone="13900001111"
    )
    result = join()
    assert result.member is not None
    return result.member.id, join


def by_demo_seed() -> tuple[int, Callable[[], object]]:
    demo.seed()
    active = db.session.scalar(sa.select(Member.id).where(Member.status == "active").order_by(Member.id).limit(1))
    return active, demo.seed


@pytest.mark.parametrize(
    "join",
    [by_order_qr, by_advisor_qr, by_campaign_qr, by_miniapp_registration, by_demo_seed],
    ids=lambda f: f.__name__,
)
def test_each_way_in_credits_the_welcome_gift_once(app_ctx, join):
    member_id, again = join()
    assert welcome_entries(member_id) == [WELCOME_POINTS]
    again()  # the same scan, registration or seed a second time
    assert welcome_entries(member_id) == [WELCOME_POINTS]
