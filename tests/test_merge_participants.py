"""A merge moves every package's rows to the survivor (or keeps them per the documented rule)."""

from __future__ import annotations

import datetime as dt
import itertools

import sqlalchemy as sa

from app.benefits.models import Benefit, BenefitShare, Booking, EntitlementEntry
from app.care.models import (
    CallbackTask,
    MemberLifecycle,
    MemberLifecycleHistory,
    Notification,
    NotificationPreference,
    SubscribeGrant,
)
from app.complaints.models import Complaint
from app.core import audit_chain
from app.core.clock import utcnow
from app.core.db import db
from app.mall.models import RedemptionOrder, SignIn, Voucher
from app.members import merging
from app.members.models import Member
from app.referrals import attribution, codes
from app.referrals.models import Referral, ReferralCode
from tests import factories
from tests.benefit_helpers import seed_catalog
from tests.mall_helpers import item
from tests.referral_helpers import newcomer

YEAR = dt.date(2026, 1, 1)
_n = itertools.count()


def _rows_of(member: Member, benefit: Benefit, dealer_id: int, *, entitlement_years: tuple[dt.date, ...]) -> None:
    """One row in every package for ``member``."""
    n = next(_n)
    now = utcnow()
    same = dict(benefit_id=benefit.id, benefit_code=benefit.code, paid_with="quota", year_start=YEAR)
    # both members used "same-request": the merged member's booking of that key stays with it
    db.session.add(Booking(member_id=member.id, request_id="same-request", **same))
    own = Booking(member_id=member.id, request_id=f"own-{n}", **same)
    db.session.add(own)
    db.session.flush()
    entry = dict(member_id=member.id, benefit_code=benefit.code)
    db.session.add(
        EntitlementEntry(**entry, year_start=YEAR, kind="use", quantity=-1, booking_id=own.id, idempotency_key=f"u{n}")
    )
    for year in entitlement_years:
        db.session.add(
            EntitlementEntry(**entry, year_start=year, kind="grant", quantity=2, idempotency_key=f"grant-{n}-{year}")
        )
    db.session.add(
        BenefitShare(
            key=f"share-{n}",
            from_member_id=member.id,
            request_id=f"share-{n}",
            benefit_id=benefit.id,
            benefit_code=benefit.code,
            year_start=YEAR,
            dealer_id=dealer_id,
            expires_at=now + dt.timedelta(days=7),
        )
    )
    mall_item = item()
    db.session.flush()
    order = RedemptionOrder(
        member_id=member.id, request_id=f"order-{n}", item_id=mall_item.id, quantity=1, unit_points=1
    )
    db.session.add(order)
    db.session.flush()
    db.session.add(
        Voucher(
            order_id=order.id,
            member_id=member.id,
            code=f"V{n}",
            code_hash=f"hash-{n}",
            expires_at=now + dt.timedelta(days=30),
        )
    )
    db.session.add(SignIn(member_id=member.id, day=dt.date(2026, 11, 1 + n % 20), streak=1))
    db.session.add(
        Notification(
            member_id=member.id,
            kind="welcome",
            channel="official_template",
            status="sent",
            dedupe_key=f"welcome:{member.id}:welcome",
            period="welcome",
            payload={},
            attempts=1,
            created_at=now,
            due_at=now,
        )
    )
    db.session.add(
        NotificationPreference(member_id=member.id, category="marketing", opted_out=(n % 2 == 0), via="miniapp")
    )
    db.session.add(SubscribeGrant(member_id=member.id, template_id="t-1", available=1, last_decision="accept"))
    db.session.add(CallbackTask(member_id=member.id, reason="low_rating", period=str(n)))
    db.session.add(MemberLifecycle(member_id=member.id, stage="growing", since=now, computed_at=now))
    db.session.add(MemberLifecycleHistory(member_id=member.id, to_stage="growing", at=now))
    db.session.add(Complaint(member_id=member.id, category="service", description="slow", created_by="agent"))
    codes.code_of(member.id)
    db.session.flush()


def _count(model, column, member_id: int) -> int:
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(model).where(column == member_id)))


def test_a_merge_moves_every_packages_rows_to_the_survivor_and_the_audit_chain_verifies(app_ctx):
    seed_catalog()
    benefit = db.session.scalars(sa.select(Benefit).order_by(Benefit.id)).first()
    dealer = factories.dealer(code="D0101")
    survivor, merged = factories.member(), factories.member()
    _rows_of(survivor, benefit, dealer.id, entitlement_years=(YEAR,))
    _rows_of(merged, benefit, dealer.id, entitlement_years=(YEAR, dt.date(2025, 1, 1)))
    friend, referrer = newcomer(), factories.member()
    now = utcnow()
    referral = dict(code="X", dealer_id=dealer.id, attributed_at=now, expires_at=now + dt.timedelta(days=180))
    db.session.add(Referral(referrer_member_id=merged.id, referee_member_id=friend.id, **referral))
    db.session.add(Referral(referrer_member_id=referrer.id, referee_member_id=merged.id, **referral))
    db.session.flush()
    merged_code = codes.code_of(merged.id).code
    before = {
        "bookings": _count(Booking, Booking.member_id, survivor.id) + _count(Booking, Booking.member_id, merged.id),
        "vouchers": 2,
        "complaints": 2,
    }

    record = merging.merge(survivor.id, [merged.id], request_key="crm:all", actor=("crm", "crm"))

    assert {"benefits", "referrals", "mall", "care", "complaints"} <= set(merging.participants())
    left = {
        model.__tablename__: _count(model, model.member_id, merged.id)
        for model in (Booking, RedemptionOrder, Voucher, SignIn, Notification, Complaint)
    }
    assert left == dict.fromkeys(left, 0) | {"bookings": 1}  # the request id the survivor already used
    assert _count(Booking, Booking.member_id, survivor.id) + 1 == before["bookings"]
    assert _count(Voucher, Voucher.member_id, survivor.id) == before["vouchers"]
    assert _count(Complaint, Complaint.member_id, survivor.id) == before["complaints"]
    assert _count(BenefitShare, BenefitShare.from_member_id, survivor.id) == 2
    # entitlements (append-only) never move; the merged member's open booking carries its use along
    remaining = db.session.execute(
        sa.select(
            EntitlementEntry.member_id, EntitlementEntry.year_start, sa.func.sum(EntitlementEntry.quantity)
        ).group_by(EntitlementEntry.member_id, EntitlementEntry.year_start)
    ).all()
    last_year = dt.date(2025, 1, 1)
    assert sorted(remaining) == sorted([(survivor.id, YEAR, 0), (merged.id, YEAR, 1), (merged.id, last_year, 2)])
    assert record.summary[str(merged.id)]["benefits"]["open_uses_carried"] == 1
    # care: survivor's preference wins, grants add up, the merged member's stage row is gone
    assert _count(NotificationPreference, NotificationPreference.member_id, survivor.id) == 1
    grant = db.session.scalar(sa.select(SubscribeGrant).where(SubscribeGrant.member_id == survivor.id))
    assert grant.available == 2
    assert _count(CallbackTask, CallbackTask.member_id, survivor.id) == 2
    assert db.session.get(MemberLifecycle, merged.id) is None
    assert _count(MemberLifecycleHistory, MemberLifecycleHistory.member_id, merged.id) == 1  # append-only: stays
    # referrals: both sides move; the survivor keeps its own code and the merged one resolves to it
    assert _count(Referral, Referral.referrer_member_id, survivor.id) == 1
    assert _count(Referral, Referral.referee_member_id, survivor.id) == 1
    assert codes.code_of(survivor.id).code != merged_code
    assert db.session.scalar(sa.select(ReferralCode.member_id).where(ReferralCode.code == merged_code)) == merged.id
    assert (
        attribution.attribute(merged_code, newcomer(), dealer_code="D0101", at=utcnow()).referral.referrer_member_id
        == survivor.id
    )
    summary = record.summary[str(merged.id)]
    assert summary["mall"]["vouchers"] == 1 and summary["complaints"]["complaints"] == 1
    db.session.commit()
    assert audit_chain.verify(db.session()).ok


def test_rows_between_the_two_members_stay_as_they_were(app_ctx):
    """A referral or a share between survivor and merged member would point a member at itself."""
    seed_catalog()
    benefit = db.session.scalars(sa.select(Benefit).order_by(Benefit.id)).first()
    dealer = factories.dealer(code="D0101")
    survivor, merged = factories.member(), factories.member()
    now = utcnow()
    referral = Referral(
        referrer_member_id=merged.id,
        referee_member_id=survivor.id,
        code="X",
        dealer_id=dealer.id,
        attributed_at=now,
        expires_at=now + dt.timedelta(days=180),
    )
    share = BenefitShare(
        key="between",
        from_member_id=merged.id,
        claimed_by_member_id=survivor.id,
        request_id="between",
        benefit_id=benefit.id,
        benefit_code=benefit.code,
        year_start=YEAR,
        dealer_id=dealer.id,
        expires_at=now + dt.timedelta(days=7),
    )
    db.session.add_all([referral, share])
    db.session.flush()

    record = merging.merge(survivor.id, [merged.id], request_key="crm:between", actor=("crm", "crm"))

    db.session.refresh(referral)
    db.session.refresh(share)
    assert (referral.referrer_member_id, referral.referee_member_id) == (merged.id, survivor.id)
    assert (share.from_member_id, share.claimed_by_member_id) == (merged.id, survivor.id)
    moved = record.summary[str(merged.id)]
    assert moved["referrals"]["referrals_made"] == 0 and moved["benefits"]["shares_given"] == 0
