"""Earning from real DMS events with the default rules, and reversals (SPEC §3)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.db import db
from app.members import activation, services
from app.members.models import Ownership
from app.points import ledger
from app.points.models import PointAccount, PointEntry, PointLot
from app.tiers.models import TierChange, TierState
from tests import dms_events, factories


@pytest.fixture
def shop(app_ctx):
    dealer = factories.dealer(code="D0101", region="north")
    factories.staff(dealer, code="SA0101")
    return dealer


@pytest.fixture
def owner(shop):
    member = factories.member(status="active", phone="13900009999")
    car = factories.vehicle(owner=member)
    return member, car


def balance(member_id):
    db.session.expire_all()
    return db.session.get(PointAccount, member_id)


def entries(member_id, **filters):
    query = sa.select(PointEntry).where(PointEntry.member_id == member_id).order_by(PointEntry.id)
    for name, value in filters.items():
        query = query.where(getattr(PointEntry, name) == value)
    return db.session.scalars(query).all()


def tier_of(member_id):
    return db.session.scalar(sa.select(TierState.tier).where(TierState.member_id == member_id))


def test_a_new_car_earns_reward_and_tier_points_and_upgrades_at_once(owner, post_dms):
    member, _car = owner
    response = post_dms(dms_events.delivered(member.phone, factories.vin(), price_fen=20_000_000))
    assert response.status_code == 202
    account = balance(member.id)
    assert (account.reward_available, account.tier_points) == (2_000, 200_000)  # ¥200,000: 1 pt/¥100; ×1
    assert tier_of(member.id) == "gold"
    [change] = db.session.scalars(sa.select(TierChange).where(TierChange.member_id == member.id)).all()
    assert (change.from_tier, change.to_tier, change.reason) == ("silver", "gold", "upgrade")
    state = db.session.get(TierState, member.id)
    assert state.review_on == (state.achieved_at + dt.timedelta(hours=8)).date().replace(
        year=state.achieved_at.year + 1
    )
    assert state.last_qualifying_at is not None


def test_a_pre_enrolled_buyer_gets_the_purchase_points_when_activating(shop, post_dms):
    assert post_dms(dms_events.delivered("13800000001", factories.vin(), price_fen=15_000_000)).status_code == 202
    member = services.find_by_phone("13800000001")
    account = balance(member.id)
    assert (account.reward_available, account.reward_pending, account.tier_points) == (0, 1_500, 150_000)
    assert tier_of(member.id) == "gold"
    activation.activate(member)
    account = balance(member.id)
    assert (account.reward_available, account.reward_pending) == (1_500 + 500, 0)


def test_an_additional_car_earns_tier_points_at_half_rate_and_gold_accelerates_reward(owner, post_dms):
    member, _car = owner
    post_dms(dms_events.delivered(member.phone, factories.vin(), price_fen=20_000_000))  # → gold
    post_dms(dms_events.delivered(member.phone, factories.vin(), price_fen=10_000_000, purchase_type="add_on"))
    account = balance(member.id)
    assert account.tier_points == 200_000 + 50_000
    assert account.reward_available == 2_000 + 1_100  # 1,000 × 1.1 for Gold


def test_a_service_visit_earns_pending_points_on_parts_and_tier_points_on_everything(owner, post_dms):
    member, car = owner
    post_dms(dms_events.service(car.vin, parts_fen=100_000, labour_fen=50_000))  # ¥1,000 parts, ¥500 labour
    account = balance(member.id)
    assert (account.reward_available, account.reward_pending, account.tier_points) == (0, 100, 750)
    lot = db.session.scalar(sa.select(PointLot).where(PointLot.member_id == member.id))
    assert lot.status == "pending"
    assert lot.available_at - lot.created_at == dt.timedelta(days=7)
    db.session.refresh(car)
    assert (car.last_mileage_km, car.last_service_on) == (12_000, utcnow().date())


def test_birthday_month_doubles_service_points(shop, post_dms):
    today = utcnow().astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    member = factories.member(status="active", birthday=dt.date(1990, today.month, 1))
    car = factories.vehicle(owner=member)
    post_dms(dms_events.service(car.vin, parts_fen=100_000, labour_fen=0))
    assert balance(member.id).reward_pending == 200


def test_excluded_customer_types_earn_nothing(shop, post_dms):
    taxi = factories.member(status="active", customer_type="taxi")
    car = factories.vehicle(owner=taxi)
    post_dms(dms_events.service(car.vin, parts_fen=100_000, labour_fen=50_000))
    assert entries(taxi.id) == []


def test_activity_caps_hold_per_member_per_month(owner, post_dms):
    member, _car = owner
    for _ in range(3):
        assert post_dms(dms_events.test_drive(member.phone)).status_code == 202
    assert [e.points for e in entries(member.id, rule_code="test_drive")] == [100, 100]


def test_insurance_renewal_earns_one_percent_of_the_premium(owner, post_dms):
    member, car = owner
    post_dms(dms_events.insurance(car.vin, premium_fen=500_000))  # ¥5,000 → ¥50 → 250 points
    assert balance(member.id).reward_available == 250


def test_a_cancelled_order_takes_the_points_back_and_the_tier_follows(owner, post_dms):
    member, _car = owner
    vin = factories.vin()
    post_dms(dms_events.delivered(member.phone, vin, price_fen=20_000_000, order_no="SO-CANCEL"))
    assert tier_of(member.id) == "gold"
    assert post_dms(dms_events.cancelled("SO-CANCEL", vin)).status_code == 202
    account = balance(member.id)
    assert (account.reward_available, account.tier_points) == (0, 0)
    assert tier_of(member.id) == "silver"
    ownership = db.session.scalar(sa.select(Ownership).where(Ownership.order_no == "SO-CANCEL"))
    assert ownership.end_reason == "order_cancelled"
    # The DMS resends the cancellation, and even the delivery under a new event id: nothing changes.
    post_dms(dms_events.cancelled("SO-CANCEL", vin))
    post_dms(dms_events.delivered(member.phone, vin, price_fen=20_000_000, order_no="SO-CANCEL"))
    account = balance(member.id)
    assert (account.reward_available, account.tier_points) == (0, 0)


def test_a_cancellation_applied_before_its_delivery_still_takes_the_points_back(owner, post_dms):
    """Drains run side by side and failed events wait out a backoff: the undo can come first."""
    member, _car = owner
    vin = factories.vin()
    assert post_dms(dms_events.cancelled("SO-EARLY", vin)).status_code == 202  # nothing earned yet
    post_dms(dms_events.delivered(member.phone, vin, price_fen=20_000_000, order_no="SO-EARLY"))
    account = balance(member.id)
    assert (account.reward_available, account.reward_pending, account.tier_points) == (0, 0, 0)
    assert tier_of(member.id) == "silver"
    ownership = db.session.scalar(sa.select(Ownership).where(Ownership.order_no == "SO-EARLY"))
    assert ownership.end_reason == "order_cancelled"  # the car of a cancelled order is not theirs


def test_a_refund_applied_before_its_service_visit_is_still_deducted_in_proportion(owner, post_dms):
    member, car = owner
    post_dms(dms_events.refund("RO-EARLY", car.vin, parts_fen=50_000, labour_fen=0, refund_no="RF-EARLY"))
    post_dms(dms_events.service(car.vin, parts_fen=100_000, labour_fen=50_000, repair_order_no="RO-EARLY"))
    assert (balance(member.id).reward_pending, balance(member.id).tier_points) == (50, 500)


def test_spent_purchase_points_become_a_debt_when_the_order_is_cancelled(owner, post_dms):
    member, _car = owner
    vin = factories.vin()
    post_dms(dms_events.delivered(member.phone, vin, price_fen=20_000_000, order_no="SO-SPENT"))
    ledger.spend(member.id, 1_500, idempotency_key="spent", source_type="test")
    post_dms(dms_events.cancelled("SO-SPENT", vin))
    account = balance(member.id)
    assert (account.reward_available, account.reward_debt) == (-1_500, 1_500)
    # A later service visit pays the debt off first, once its lock period is over.
    car = factories.vehicle(owner=member)
    post_dms(dms_events.service(car.vin, parts_fen=2_000_000, labour_fen=0))
    released = ledger.release_lots(member.id, ("pending",), now=utcnow() + dt.timedelta(days=8))
    account = balance(member.id)
    assert released == 2_000
    assert (account.reward_available, account.reward_debt) == (500, 0)


def test_partial_refunds_reverse_in_proportion_cumulatively_and_once(owner, post_dms):
    member, car = owner
    post_dms(dms_events.service(car.vin, parts_fen=100_000, labour_fen=50_000, repair_order_no="RO-1"))
    assert (balance(member.id).reward_pending, balance(member.id).tier_points) == (100, 750)
    post_dms(dms_events.refund("RO-1", car.vin, parts_fen=50_000, labour_fen=0, refund_no="RF-1"))
    assert (balance(member.id).reward_pending, balance(member.id).tier_points) == (50, 500)
    post_dms(dms_events.refund("RO-1", car.vin, parts_fen=50_000, labour_fen=0, refund_no="RF-1"))  # resent
    assert (balance(member.id).reward_pending, balance(member.id).tier_points) == (50, 500)
    post_dms(dms_events.refund("RO-1", car.vin, parts_fen=50_000, labour_fen=50_000, refund_no="RF-2"))
    assert (balance(member.id).reward_pending, balance(member.id).tier_points) == (0, 0)
    # No refund → re-earn loop: the same repair order sent again earns nothing.
    post_dms(dms_events.service(car.vin, parts_fen=100_000, labour_fen=50_000, repair_order_no="RO-1"))
    assert (balance(member.id).reward_pending, balance(member.id).tier_points) == (0, 0)


def test_a_family_purchase_credits_the_main_member(owner, post_dms):
    main_member, _car = owner
    vin = factories.vin()
    document = dms_events.delivered(
        "13800000077",
        vin,
        price_fen=10_000_000,
        purchase_type="family",
        credit_member_no=main_member.member_no,
    )
    assert post_dms(document).status_code == 202
    assert balance(main_member.id).reward_available == 1_000
    assert balance(main_member.id).tier_points == 50_000
    buyer = services.find_by_phone("13800000077")
    assert entries(buyer.id) == []
    roles = sorted(o.role for o in db.session.scalars(sa.select(Ownership).where(Ownership.ended_on.is_(None))))
    assert "family" in roles


def test_events_for_unknown_cars_are_processed_without_effect(shop, post_dms):
    from app.core import inbox

    post_dms(dms_events.service(factories.vin(), parts_fen=1_000, labour_fen=0))
    event = db.session.scalar(sa.select(inbox.InboundEvent))
    assert event.status == "processed"
    assert "unknown" in event.outcome


def test_activities_count_once_per_reference_and_respect_their_caps(owner):
    from app.points.activities import record_activity

    member, _car = owner
    day = dt.datetime(2026, 5, 1, 2, 0, tzinfo=dt.UTC)
    assert record_activity(member, "daily_sign_in", at=day) == 5
    assert record_activity(member, "daily_sign_in", at=day + dt.timedelta(hours=3)) == 0  # same Shanghai day
    earned = sum(record_activity(member, "daily_sign_in", at=day + dt.timedelta(days=d)) for d in range(1, 30))
    assert earned == 95  # the monthly cap of 100 sign-in points
    assert record_activity(member, "profile_completed") == 200
    assert record_activity(member, "profile_completed") == 0
    with pytest.raises(ValueError):
        record_activity(member, "survey")  # a survey needs its id
