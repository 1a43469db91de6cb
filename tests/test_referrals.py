"""Referrals end to end on PostgreSQL: codes, attribution, milestones from signed DMS events,
rewards with cooling and clawback, the cap, self-referrals, flags and the window."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import ValidationFailed
from app.dealers.models import SalesLead
from app.points import expiry, ledger, queries
from app.points.models import PointEntry
from app.referrals import attribution, codes, milestones
from app.referrals.models import Referral
from app.wechat.gateways import PNG_SIGNATURE
from tests import dms_events, factories
from tests.referral_helpers import identity, newcomer, order_placed, refer

PRICE = 20_000_000  # ¥200,000 in fen


@pytest.fixture
def shop(app_ctx):
    dealer = factories.dealer(code="D0101", latitude=43.88, longitude=125.27)
    factories.staff(dealer, code="SA0101")
    return dealer


def _deliver(post_dms, phone: str, order_no: str, **kw):
    response = post_dms(dms_events.delivered(phone, factories.vin(), price_fen=PRICE, order_no=order_no, **kw))
    assert response.status_code == 202, response.json
    return response


def _referral(referee) -> Referral:
    db.session.flush()
    db.session.expire_all()
    return db.session.scalar(
        sa.select(Referral).where(Referral.referee_member_id == referee.id, Referral.superseded_at.is_(None))
    )


def test_a_code_is_short_opaque_and_stable_and_its_mini_app_code_is_drawn_once(shop, fakes):
    member = factories.member()
    code = codes.code_of(member.id)
    assert codes.code_of(member.id).code == code.code
    scene = codes.scene_of(code)
    assert len(scene) <= 32 and member.member_no not in scene and (member.phone or "") not in scene
    first, second = codes.wxacode(code), codes.wxacode(code)
    assert first.startswith(PNG_SIGNATURE) and first == second
    calls = [c for c in fakes.mini_app.calls if c["api"] == "getwxacodeunlimit"]
    assert len(calls) == 1 and calls[0]["scene"] == scene
    assert codes.code_from_scene(scene) == code.code


def test_the_first_touch_wins_and_the_lead_reaches_the_dealer(shop):
    first, second, friend = factories.member(), factories.member(), newcomer()
    won = refer(first, friend)
    lost = refer(second, friend)
    assert won.new and not lost.new and lost.referral.referrer_member_id == first.id
    lead = db.session.get(SalesLead, won.referral.lead_id)
    assert (lead.source, lead.dealer_id, lead.member_id, lead.referrer_member_id) == (
        "referral", shop.id, friend.id, first.id
    )  # fmt: skip


def test_a_lead_is_routed_to_the_chosen_the_nearest_or_the_referrers_dealer(shop):
    far = factories.dealer(code="D0999", latitude=39.99, longitude=116.47)
    referrer = factories.member(enrolling_dealer_id=far.id)
    near = refer(referrer, newcomer(), dealer_code=None, latitude=43.9, longitude=125.3)
    assert near.referral.dealer_id == shop.id
    home = refer(referrer, newcomer(), dealer_code=None)
    assert home.referral.dealer_id == far.id
    chosen = refer(referrer, newcomer(), dealer_code="D0101")
    assert chosen.referral.dealer_id == shop.id
    with pytest.raises(ValidationFailed) as refused:
        refer(factories.member(), newcomer(), dealer_code=None)
    assert "dealer_code" in refused.value.fields


def test_self_referral_by_shared_unionid_is_refused(shop):
    referrer, other_account = factories.member(), newcomer()
    identity(referrer, "union-same-person")
    identity(other_account, "union-same-person")
    with pytest.raises(attribution.SelfReferral) as refused:
        refer(referrer, other_account)
    assert refused.value.details == {"reason": "unionid"}
    assert _referral(other_account) is None


def test_self_referral_by_shared_device_is_refused(shop):
    referrer, other_account = factories.member(), newcomer()
    codes.record_device(referrer.id, codes.device_hash("iphone-of-a"))
    with pytest.raises(attribution.SelfReferral) as refused:
        refer(referrer, other_account, device_id="iphone-of-a")
    assert refused.value.details == {"reason": "device"}
    assert _referral(other_account) is None


def test_self_referral_within_a_household_is_refused(shop):
    referrer, spouse = factories.member(), newcomer()
    car = factories.vehicle(referrer)
    from app.members import services

    services.start_ownership(spouse, car, started_on=car.purchase_date, role="family")
    with pytest.raises(attribution.SelfReferral):
        refer(referrer, spouse)


def test_self_referral_from_the_same_home_address_is_refused(shop):
    referrer = factories.member(address="长春市绿园区西安大路1688号")
    spouse = newcomer(address="长春市 绿园区 西安大路 １６８８ 号")  # spaces and full-width digits
    with pytest.raises(attribution.SelfReferral) as refused:
        refer(referrer, spouse)
    assert refused.value.details == {"reason": "household"}
    assert _referral(spouse) is None


def test_a_referee_at_another_address_is_attributed(shop):
    referrer = factories.member(address="长春市绿园区西安大路1688号")
    neighbour = newcomer(address="长春市绿园区西安大路1690号")
    assert refer(referrer, neighbour).referral.referrer_member_id == referrer.id
    assert _referral(neighbour) is not None


def test_milestones_from_signed_dms_events_pay_small_then_big_pending_rewards(shop, post_dms):
    referrer, friend = factories.member(), newcomer()
    refer(referrer, friend)
    assert queries.balance(referrer.id).available == 50  # lead
    assert post_dms(dms_events.test_drive(friend.phone)).status_code == 202
    assert _referral(friend).milestone == "test_drive"
    assert queries.balance(referrer.id).available == 150  # + test drive
    assert post_dms(order_placed(friend.phone, "SO-REF-1")).status_code == 202
    assert (_referral(friend).milestone, _referral(friend).order_no) == ("order", "SO-REF-1")
    _deliver(post_dms, friend.phone, "SO-REF-1")
    referral = _referral(friend)
    assert (referral.milestone, referral.reward_status, referral.reward_points) == ("delivery", "credited", 2000)
    mine = queries.balance(referrer.id)
    assert (mine.available, mine.pending) == (150, 2000)
    assert mine.tier_points == PRICE // 200  # referred price × 0.5 (1 tier point per ¥1)
    assert queries.balance(friend.id).pending >= 500
    assert db.session.get(SalesLead, referral.lead_id).status == "converted"


def test_the_same_delivery_sent_three_times_rewards_once(shop, post_dms):
    referrer, friend = factories.member(), newcomer()
    refer(referrer, friend)
    document = dms_events.delivered(friend.phone, factories.vin(), price_fen=PRICE, order_no="SO-3X")
    for n in range(3):
        assert post_dms({**document, "event_id": f"resend-{n}"}).status_code == 202
    rewards = db.session.scalars(
        sa.select(PointEntry).where(PointEntry.member_id == referrer.id, PointEntry.source_type == "referral.delivered")
    ).all()
    assert sorted((e.currency, e.points) for e in rewards) == [("reward", 2000), ("tier", PRICE // 200)]


def test_cancellation_after_cooling_claws_back_into_debt(shop, post_dms):
    referrer, friend = factories.member(), newcomer()
    refer(referrer, friend)
    _deliver(post_dms, friend.phone, "SO-CLAW")
    later = utcnow() + dt.timedelta(days=31)
    expiry.release_due(later)
    assert queries.balance(referrer.id, now=later).available == 2050
    ledger.spend(referrer.id, 2050, idempotency_key="mall:claw", source_type="mall")
    vin = db.session.scalar(sa.select(Referral.order_no).where(Referral.referee_member_id == friend.id))
    assert vin == "SO-CLAW"
    assert post_dms(dms_events.cancelled("SO-CLAW", factories.vin())).status_code == 202
    referral = _referral(friend)
    assert (referral.milestone, referral.reward_status, referral.clawed_back_points) == (
        "cancelled",
        "clawed_back",
        2000,
    )
    assert db.session.get(SalesLead, referral.lead_id).status == "lost"
    balance = queries.balance(referrer.id)
    assert (balance.available, balance.debt) == (-2000, 2000)  # available nets the debt
    assert balance.tier_points == 0


def test_the_eleventh_rewarded_referral_of_a_year_is_capped(shop):
    referrer = factories.member()
    friends = [newcomer() for _ in range(11)]
    for n, friend in enumerate(friends):
        refer(referrer, friend, at=utcnow() - dt.timedelta(hours=2 * (11 - n)))  # no burst
        milestones.delivery(friend.phone, order_no=f"SO-CAP-{n}", model_code="MAGOTAN", price_fen=PRICE, at=utcnow())
    statuses = [_referral(f).reward_status for f in friends]
    assert statuses == ["credited"] * 10 + ["capped"]
    paid = db.session.scalar(
        sa.select(sa.func.sum(PointEntry.points)).where(
            PointEntry.member_id == referrer.id, PointEntry.rule_code == "referral_referrer_reward"
        )
    )
    assert paid == 10 * 2000


def test_a_three_member_ring_is_flagged_and_its_rewards_held(shop):
    a, b, c = newcomer(), newcomer(), newcomer()
    assert refer(a, b).referral.flags == []
    assert refer(b, c).referral.flags == []
    ring = refer(c, a).referral
    assert "ring" in ring.flags and ring.review == "pending" and ring.reward_status == "held"
    milestones.delivery(a.phone, order_no="SO-RING", model_code="MAGOTAN", price_fen=PRICE, at=utcnow())
    assert _referral(a).reward_status == "held"
    assert queries.balance(c.id).pending == 0


def test_more_than_five_leads_an_hour_from_one_code_are_flagged(shop):
    referrer = factories.member()
    start = utcnow() - dt.timedelta(minutes=30)
    results = [refer(referrer, newcomer(), at=start + dt.timedelta(minutes=n)).referral for n in range(6)]
    assert [r.flags for r in results] == [[]] * 5 + [["burst"]]


def test_referees_sharing_a_device_are_flagged(shop):
    one, two = factories.member(), factories.member()
    assert refer(one, newcomer(), device_id="shared-phone").referral.flags == []
    assert refer(two, newcomer(), device_id="shared-phone").referral.flags == ["shared_device"]


def test_a_delivery_on_day_181_after_attribution_earns_nothing(shop, post_dms):
    referrer, friend = factories.member(), newcomer()
    refer(referrer, friend, at=utcnow() - dt.timedelta(days=181))
    assert post_dms(dms_events.test_drive(friend.phone)).status_code == 202
    _deliver(post_dms, friend.phone, "SO-LATE")
    referral = _referral(friend)
    assert referral.reward_status == "expired" and referral.test_drive_at is None
    earned = db.session.scalars(
        sa.select(PointEntry).where(PointEntry.member_id == referrer.id, PointEntry.source_type.like("referral.%"))
    ).all()
    assert [e.source_type for e in earned] == []  # the lead 181 days ago was before the lead rule existed


def test_a_delivery_on_day_179_still_counts(shop):
    referrer, friend = factories.member(), newcomer()
    refer(referrer, friend, at=utcnow() - dt.timedelta(days=179))
    milestones.delivery(friend.phone, order_no="SO-ONTIME", model_code="MAGOTAN", price_fen=PRICE, at=utcnow())
    assert _referral(friend).reward_status == "credited"


def test_an_order_event_with_a_bad_phone_is_refused_with_field_errors(shop, post_dms):
    response = post_dms(order_placed("12345", "SO-BAD"))
    assert response.status_code == 422
    assert "phone" in response.json["error"]["fields"]["payload"]


def test_release_pending_with_a_date_releases_the_cooled_reward(shop, app, post_dms):
    referrer, friend = factories.member(), newcomer()
    refer(referrer, friend)
    _deliver(post_dms, friend.phone, "SO-COOL")
    runner = app.test_cli_runner()
    early = runner.invoke(args=["points", "release-pending", "--now", (utcnow() + dt.timedelta(days=29)).isoformat()])
    assert early.exit_code == 0 and queries.balance(referrer.id).pending == 2000
    late = runner.invoke(
        args=["points", "release-pending", "--now", (utcnow() + dt.timedelta(days=31)).date().isoformat()]
    )
    assert late.exit_code == 0, late.output
    assert queries.balance(referrer.id).pending == 0 and queries.balance(referrer.id).available == 2050
    assert runner.invoke(args=["points", "release-pending", "--now", "soon"]).exit_code != 0


def test_after_the_window_without_a_delivery_the_next_touch_takes_over(shop):
    first, second, friend = factories.member(), factories.member(), newcomer()
    lapsed = refer(first, friend, at=utcnow() - dt.timedelta(days=181)).referral
    taken = refer(second, friend)
    assert taken.new and taken.referral.referrer_member_id == second.id
    db.session.refresh(lapsed)
    assert lapsed.superseded_at is not None and lapsed.reward_status == "expired"
    assert not refer(first, friend).new  # the new attribution is the first touch now
    milestones.delivery(friend.phone, order_no="SO-NEXT", model_code="MAGOTAN", price_fen=PRICE, at=utcnow())
    assert _referral(friend).referrer_member_id == second.id and _referral(friend).reward_status == "credited"
    assert queries.balance(second.id).pending == 2000 and queries.balance(first.id).pending == 0


def test_a_delivered_referral_is_never_taken_over(shop):
    first, second, friend = factories.member(), factories.member(), newcomer()
    refer(first, friend, at=utcnow() - dt.timedelta(days=200))
    milestones.delivery(
        friend.phone, order_no="SO-OLD", model_code="MAGOTAN", price_fen=PRICE, at=utcnow() - dt.timedelta(days=100)
    )
    assert not refer(second, friend).new


def test_withdrawing_consent_erases_the_device_hashes_and_the_leads_phone_index(shop):
    from app.members import privacy
    from app.referrals.models import MemberDevice

    referrer, friend = factories.member(), newcomer()
    referral = refer(referrer, friend, device_id="friend-phone").referral
    assert referral.device_hash and db.session.get(SalesLead, referral.lead_id).phone_index
    privacy.withdraw_everything(friend)
    db.session.expire_all()
    assert db.session.get(Referral, referral.id).device_hash is None
    assert db.session.get(SalesLead, referral.lead_id).phone_index is None
    assert db.session.scalars(sa.select(MemberDevice).where(MemberDevice.member_id == friend.id)).all() == []
