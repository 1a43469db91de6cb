"""The two-currency ledger: lots, soonest-expiring-first spending, reversal, debt, expiry."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.core.db import db
from app.members import activation
from app.points import expiry, ledger, queries
from app.points.models import PointAccount, PointAllocation, PointEntry, PointLot
from tests import factories

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 10, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


@pytest.fixture(params=["auto", "orm"], autouse=True)
def implementation(request, monkeypatch):
    """Every ledger test runs on the SQL fast path (PostgreSQL) and on the ORM path."""
    monkeypatch.setattr(ledger.posting, "IMPLEMENTATION", request.param)
    return request.param


def earn(member_id, points, key, *, at=T0, pending_days=0, held=False, currency="reward"):
    posting = ledger.earn(
        ledger.Earning(
            member_id=member_id,
            currency=currency,
            points=points,
            idempotency_key=key,
            source_type="test",
            pending_days=pending_days,
            held=held,
        ),
        at=at,
    )
    return db.session.get(PointEntry, posting.id)


def account(member_id) -> PointAccount:
    db.session.flush()
    row = db.session.get(PointAccount, member_id)
    db.session.refresh(row)
    return row


def lot_of(entry) -> PointLot:
    return db.session.scalar(sa.select(PointLot).where(PointLot.entry_id == entry.id))


def check_invariants(member_id):
    acct = account(member_id)
    lots = db.session.scalars(sa.select(PointLot).where(PointLot.member_id == member_id)).all()
    available = sum(lot.remaining for lot in lots if lot.status == "available")
    pending = sum(lot.remaining for lot in lots if lot.status in ("pending", "held"))
    assert acct.reward_available == available - acct.reward_debt
    assert acct.reward_pending == pending
    assert not (acct.reward_debt and available), "a debt and spendable lots never coexist"
    entries = db.session.scalars(
        sa.select(PointEntry).where(PointEntry.member_id == member_id, PointEntry.currency == "reward")
    ).all()
    assert sum(e.points for e in entries) == acct.reward_available + acct.reward_pending


@pytest.fixture
def member(app_ctx):
    return factories.member()


def test_a_lot_expires_at_the_end_of_the_month_24_months_later_on_the_shanghai_calendar(member):
    entry = earn(member.id, 100, "a")
    # Earned 2026-03-10 → expires at the end of March 2028 (Shanghai) = 2028-03-31T16:00Z.
    assert lot_of(entry).expires_at == dt.datetime(2028, 3, 31, 16, 0, tzinfo=UTC)
    late_evening = dt.datetime(2026, 3, 31, 17, 0, tzinfo=UTC)  # already 1 April in Shanghai
    assert ledger.lot_expiry(late_evening) == dt.datetime(2028, 4, 30, 16, 0, tzinfo=UTC)


def test_spending_takes_the_soonest_expiring_lot_first(member):
    later = earn(member.id, 100, "later", at=T0 + dt.timedelta(days=60))
    sooner = earn(member.id, 100, "sooner", at=T0)
    entry = ledger.spend(member.id, 130, idempotency_key="spend-1", source_type="test")
    assert entry.new and entry.points == -130
    assert (lot_of(sooner).remaining, lot_of(sooner).status) == (0, "depleted")
    assert lot_of(later).remaining == 70
    allocations = db.session.execute(
        sa.select(PointAllocation.lot_id, PointAllocation.points)
        .where(PointAllocation.entry_id == entry.id)
        .order_by(PointAllocation.id)
    ).all()
    assert [tuple(row) for row in allocations] == [(lot_of(sooner).id, -100), (lot_of(later).id, -30)]
    assert account(member.id).reward_available == 70
    check_invariants(member.id)


def test_spending_more_than_available_is_refused_and_changes_nothing(member, client):
    earn(member.id, 50, "a")
    with pytest.raises(ledger.InsufficientPoints) as excinfo:
        ledger.spend(member.id, 51, idempotency_key="too-much", source_type="test")
    assert excinfo.value.status == 409
    assert excinfo.value.details == {"available": 50, "requested": 51}
    assert account(member.id).reward_available == 50


def test_the_same_idempotency_key_applies_once(member):
    first = earn(member.id, 100, "dup")
    again = earn(member.id, 100, "dup")
    assert first.id == again.id
    spent = ledger.spend(member.id, 10, idempotency_key="s", source_type="test")
    repeat = ledger.spend(member.id, 10, idempotency_key="s", source_type="test")
    assert (spent.new, repeat.new, repeat.id) == (True, False, spent.id)
    assert account(member.id).reward_available == 90
    with pytest.raises(ledger.IdempotencyConflict):
        ledger.spend(member.id, 10, idempotency_key="dup", source_type="test")


def test_pending_points_are_not_spendable_until_released(member):
    entry = earn(member.id, 100, "svc", pending_days=7)
    acct = account(member.id)
    assert (acct.reward_available, acct.reward_pending) == (0, 100)
    assert expiry.release_due(T0 + dt.timedelta(days=6)) == 0
    assert expiry.release_due(T0 + dt.timedelta(days=7, seconds=1)) == 1
    acct = account(member.id)
    assert (acct.reward_available, acct.reward_pending, lot_of(entry).status) == (100, 0, "available")
    check_invariants(member.id)


def test_a_reversal_takes_from_pending_first_then_lots_then_becomes_a_debt_paid_by_later_earnings(member):
    old = earn(member.id, 100, "old")
    service = earn(member.id, 300, "service", pending_days=7)
    ledger.spend(member.id, 80, idempotency_key="spend", source_type="test")  # old lot: 20 left
    # Reverse 300 of the service earning: all from its pending lot.
    ledger.reverse(service, 300, idempotency_key="r1", source_type="service.refunded")
    acct = account(member.id)
    assert (acct.reward_available, acct.reward_pending, lot_of(service).status) == (20, 0, "reversed")
    # Reverse the old earning (100): 20 still in its lot, 80 were spent → a debt of 80.
    ledger.reverse(old, 100, idempotency_key="r2", source_type="order.cancelled")
    acct = account(member.id)
    assert (acct.reward_available, acct.reward_debt) == (-80, 80)
    check_invariants(member.id)
    with pytest.raises(ledger.InsufficientPoints):
        ledger.spend(member.id, 1, idempotency_key="while-in-debt", source_type="test")
    paid = earn(member.id, 50, "pays-debt")
    acct = account(member.id)
    assert (acct.reward_available, acct.reward_debt, lot_of(paid).remaining) == (-30, 30, 0)
    earn(member.id, 100, "more")
    acct = account(member.id)
    assert (acct.reward_available, acct.reward_debt) == (70, 0)
    check_invariants(member.id)


def test_reversals_never_take_back_more_than_was_given(member):
    entry = earn(member.id, 100, "e")
    ledger.reverse(entry, 60, idempotency_key="r1", source_type="t")
    ledger.reverse(entry, 60, idempotency_key="r2", source_type="t")  # only 40 left to reverse
    assert ledger.reversed_points(entry.id) == 100
    assert account(member.id).reward_available == 0


def test_held_points_are_credited_at_activation_with_the_welcome_gift_once(app_ctx):
    member = factories.member(status="pre_enrolled")
    earn(member.id, 2199, "purchase", held=True)
    assert (account(member.id).reward_available, account(member.id).reward_pending) == (0, 2199)
    result = activation.activate(member)
    assert (result.newly_active, result.released_points, result.welcome_points) == (True, 2199, 500)
    assert member.status == "active"
    assert account(member.id).reward_available == 2699
    assert activation.activate(member).newly_active is False
    assert account(member.id).reward_available == 2699
    check_invariants(member.id)


def test_tier_points_have_no_lots_and_move_the_tier_balance_only(member):
    earn(member.id, 150_000, "car", currency="tier")
    acct = account(member.id)
    assert (acct.tier_points, acct.reward_available) == (150_000, 0)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(PointLot)) == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE point_entries SET points = 1000000",
        "DELETE FROM point_entries",
        "DELETE FROM point_allocations",
    ],
)
def test_the_database_refuses_to_rewrite_the_ledger(member, statement):
    entry = earn(member.id, 100, "x")
    ledger.spend(member.id, 10, idempotency_key="y", source_type="test")
    db.session.flush()
    assert entry.id
    with pytest.raises(DBAPIError, match="append-only"), db.session.begin_nested():
        db.session.execute(sa.text(statement))


def test_the_database_refuses_a_duplicate_idempotency_key(member):
    earn(member.id, 100, "unique-key")
    with pytest.raises(IntegrityError), db.session.begin_nested():
        db.session.execute(
            sa.insert(PointEntry).values(
                member_id=member.id,
                currency="reward",
                kind="earn",
                points=5,
                idempotency_key="unique-key",
                source_type="sneaky",
                funder="oem",
                occurred_at=T0,
                created_at=T0,
            )
        )


def test_nightly_expiry_expires_due_lots_only_and_writes_one_entry_per_member(app_ctx):
    alice, bob = factories.member(), factories.member()
    old = earn(alice.id, 100, "a-old", at=T0 - dt.timedelta(days=800))
    earn(alice.id, 40, "a-new", at=T0)
    earn(bob.id, 70, "b-old", at=T0 - dt.timedelta(days=800))
    ledger.spend(alice.id, 30, idempotency_key="a-spend", source_type="t", at=T0 - dt.timedelta(days=10))
    run = expiry.expire_due(T0)
    assert (run.members, run.lots, run.points) == (2, 2, 70 + 70)
    assert (lot_of(old).status, lot_of(old).expired_points) == ("expired", 70)
    assert account(alice.id).reward_available == 40
    assert account(bob.id).reward_available == 0
    expire_entries = db.session.scalars(sa.select(PointEntry).where(PointEntry.kind == "expire")).all()
    assert sorted(e.points for e in expire_entries) == [-70, -70]
    assert expiry.expire_due(T0).members == 0  # nothing left to expire
    check_invariants(alice.id)
    check_invariants(bob.id)


def test_the_inactivity_policy_expires_everything_after_24_idle_months(app_ctx):
    from app.core import tunables

    tunables.set_value("points.expiry_policy", "inactivity", actor=("test", "t"))
    idle, active = factories.member(), factories.member()
    earn(idle.id, 100, "i1", at=T0 - dt.timedelta(days=800))
    earn(active.id, 100, "a1", at=T0 - dt.timedelta(days=800))
    earn(active.id, 5, "a2", at=T0 - dt.timedelta(days=30))
    run = expiry.expire_due(T0)
    assert run.members == 1
    assert account(idle.id).reward_available == 0
    assert account(active.id).reward_available == 105


def test_the_balance_view_reports_expiring_soon(member):
    now = dt.datetime(2028, 3, 15, tzinfo=UTC)
    earn(member.id, 100, "expires-march-2028", at=T0)
    earn(member.id, 50, "expires-may-2028", at=T0 + dt.timedelta(days=60))
    view = queries.balance(member.id, now=now)
    assert (view.available, view.expiring_30_days, view.expiring_90_days) == (150, 100, 150)
    assert view.next_expiry_points == 100
