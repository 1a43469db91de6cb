"""Refunding a spend: the points go back into the lots the spend drained, keeping their expiry."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.core.db import db
from app.core.errors import Conflict
from app.points import expiry, ledger
from app.points.models import PointAccount, PointAllocation, PointEntry, PointLot
from tests import factories
from tests.conftest import run_concurrently
from tests.test_ledger import T0, account, check_invariants, earn, lot_of

UTC = dt.UTC


@pytest.fixture(params=["auto", "orm"], autouse=True)
def implementation(request, monkeypatch):
    """The spend being refunded is written by the SQL fast path and by the ORM path."""
    monkeypatch.setattr(ledger.posting, "IMPLEMENTATION", request.param)
    return request.param


@pytest.fixture
def member(app_ctx):
    return factories.member()


def spend(member_id, points, key, at=T0):
    posting = ledger.spend(member_id, points, idempotency_key=key, source_type="test", at=at)
    return db.session.get(PointEntry, posting.id)


def test_a_full_refund_restores_the_same_lots_with_their_own_expiry(member):
    early = earn(member.id, 50, "early", at=T0)
    late = earn(member.id, 100, "late", at=T0 + dt.timedelta(days=40))
    spent = spend(member.id, 120, "s", at=T0 + dt.timedelta(days=41))  # early 50 + late 70
    assert (lot_of(early).remaining, lot_of(late).remaining) == (0, 30)
    lots_before = db.session.scalar(sa.select(sa.func.count()).select_from(PointLot))

    entry, new = ledger.refund(spent, 120, idempotency_key="r", source_type="test", at=T0 + dt.timedelta(days=42))

    assert new and (entry.kind, entry.points, entry.reverses_entry_id) == ("refund", 120, spent.id)
    assert (lot_of(early).remaining, lot_of(early).status) == (50, "available")
    assert (lot_of(late).remaining, lot_of(late).status) == (100, "available")
    assert lot_of(early).expires_at == ledger.lot_expiry(T0)  # the original expiry, not a new one
    assert db.session.scalar(sa.select(sa.func.count()).select_from(PointLot)) == lots_before
    allocations = db.session.execute(
        sa.select(PointAllocation.lot_id, PointAllocation.points).where(PointAllocation.entry_id == entry.id)
    ).all()
    assert sorted(allocations) == sorted([(lot_of(early).id, 50), (lot_of(late).id, 70)])
    acct = account(member.id)
    assert (acct.reward_available, acct.lifetime_spent) == (150, 0)
    check_invariants(member.id)


def test_a_refund_is_idempotent_by_key(member):
    earn(member.id, 100, "e")
    spent = spend(member.id, 40, "s")
    first, new = ledger.refund(spent, 40, idempotency_key="r", source_type="test")
    again, new_again = ledger.refund(spent, 40, idempotency_key="r", source_type="test")
    assert new and not new_again and again.id == first.id
    assert account(member.id).reward_available == 100
    check_invariants(member.id)


def test_partial_refunds_latest_expiring_first_and_never_more_than_was_spent(member):
    early = earn(member.id, 50, "early", at=T0)
    late = earn(member.id, 50, "late", at=T0 + dt.timedelta(days=40))
    spent = spend(member.id, 80, "s", at=T0 + dt.timedelta(days=41))  # early 50, late 30
    ledger.refund(spent, 20, idempotency_key="r1", source_type="test")
    assert (lot_of(early).remaining, lot_of(late).remaining) == (0, 40)  # the latest-expiring lot first
    ledger.refund(spent, 30, idempotency_key="r2", source_type="test")
    assert (lot_of(early).remaining, lot_of(late).remaining) == (20, 50)
    last, _ = ledger.refund(spent, 500, idempotency_key="r3", source_type="test")  # only 30 left
    assert last.points == 30 and ledger.refunded_points(spent.id) == 80
    assert (lot_of(early).remaining, lot_of(late).remaining) == (50, 50)
    with pytest.raises(Conflict):
        ledger.refund(spent, 1, idempotency_key="r4", source_type="test")
    check_invariants(member.id)


def test_points_returning_to_an_expired_lot_come_back_in_a_refund_lot_valid_30_days(member):
    old = earn(member.id, 60, "old", at=T0)
    fresh = earn(member.id, 100, "fresh", at=T0 + dt.timedelta(days=300))
    spent = spend(member.id, 100, "s", at=T0 + dt.timedelta(days=301))  # old 60, fresh 40
    old_expiry = lot_of(old).expires_at
    later = old_expiry + dt.timedelta(days=1)
    expiry.expire_due(later)  # nothing left in the old lot to expire, but it is past its date
    refund_at = later + dt.timedelta(hours=1)

    entry, _ = ledger.refund(spent, 100, idempotency_key="r", source_type="test", at=refund_at)

    assert lot_of(old).remaining == 0  # an expired lot is not refilled
    assert lot_of(fresh).remaining == 100  # still valid: back into it
    grace = lot_of(entry)
    assert (grace.points, grace.remaining, grace.status) == (60, 60, "available")
    assert grace.expires_at == refund_at + dt.timedelta(days=30)
    assert account(member.id).reward_available == 160
    check_invariants(member.id)


def test_a_refund_pays_off_a_debt_first(member):
    bought = earn(member.id, 100, "order")
    spent = spend(member.id, 100, "s")
    ledger.reverse(bought, 100, idempotency_key="cancel", source_type="order.cancelled")  # debt 100
    ledger.refund(spent, 60, idempotency_key="r", source_type="test")
    acct = account(member.id)
    assert (acct.reward_available, acct.reward_debt) == (-40, 40)
    assert lot_of(bought).remaining == 0
    check_invariants(member.id)


def test_only_a_reward_spend_can_be_refunded(member):
    earning = earn(member.id, 100, "e")
    with pytest.raises(ValueError):
        ledger.refund(earning, 10, idempotency_key="r", source_type="test")


@pytest.mark.postgres
@pytest.mark.committed
def test_concurrent_refunds_and_spends_keep_the_balance_right(app, implementation):
    with app.app_context():
        member = factories.member()
        for i in range(4):
            ledger.earn(
                ledger.Earning(
                    member_id=member.id, currency="reward", points=100, idempotency_key=f"seed-{i}", source_type="t"
                ),
                at=T0 + dt.timedelta(days=i),
            )
        spends = [
            ledger.spend(member.id, 40, idempotency_key=f"pre-{i}", source_type="t").id for i in range(10)
        ]  # 400 spent: 0 left
        db.session.commit()
        member_id = member.id

    def act(i):
        with app.app_context():
            if i % 2 == 0:  # refund one of the earlier spends (twice each, under the same key)
                original = db.session.get(PointEntry, spends[(i // 2) % 10])
                ledger.refund(original, 40, idempotency_key=f"refund-{(i // 2) % 10}", source_type="t")
            else:
                try:
                    ledger.spend(member_id, 30, idempotency_key=f"new-{i}", source_type="t")
                except ledger.InsufficientPoints:
                    db.session.rollback()
                    return "refused"
            db.session.commit()
            return "ok"

    results = run_concurrently(40, act)
    assert set(results) <= {"ok", "refused"}, results
    with app.app_context():
        acct = db.session.get(PointAccount, member_id)
        new_spends = -(
            db.session.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(PointEntry.points), 0)).where(
                    PointEntry.member_id == member_id, PointEntry.idempotency_key.like("new-%")
                )
            )
        )
        refunds = db.session.scalar(
            sa.select(sa.func.sum(PointEntry.points)).where(
                PointEntry.member_id == member_id, PointEntry.kind == "refund"
            )
        )
        assert refunds == 400  # each of the 10 spends refunded once, whatever the race
        assert acct.reward_available == 400 - new_spends >= 0
        assert acct.lifetime_spent == new_spends
        lots = db.session.scalar(
            sa.select(sa.func.sum(PointLot.remaining)).where(
                PointLot.member_id == member_id, PointLot.status == "available"
            )
        )
        assert lots == acct.reward_available
