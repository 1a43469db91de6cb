"""Parity of the nightly's set-based PostgreSQL paths with the member-by-member ledger code: the
pending release (``expiry.release_due``) and the tier review (``tier_review.review_due_pg``) leave
the same rows — lots, allocations, accounts, entries, tier states and changes, CRM outbox rows and
notices — as ``ledger.release_lots`` / ``tier_review.review_member`` on a twin of each member."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.care import preferences
from app.care.models import Notification
from app.core.db import db
from app.crm.models import CrmOutboxEntry
from app.points import expiry, ledger, tier_review
from app.points.models import PointAccount, PointAllocation, PointEntry, PointLot
from app.tiers import policy
from app.tiers.models import TierChange, TierState
from tests import factories

pytestmark = pytest.mark.postgres

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 10, 4, 0, tzinfo=UTC)
REVIEW_DAY = dt.date(2026, 6, 1)


def earn(member_id, points, key, *, pending_days=0, currency="reward", at=T0):
    posting = ledger.earn(
        ledger.Earning(
            member_id=member_id,
            currency=currency,
            points=points,
            idempotency_key=f"{key}-{member_id}",
            source_type="test",
            pending_days=pending_days,
        ),
        at=at,
    )
    return db.session.get(PointEntry, posting.id)


def outbox_kinds(member_id):
    return db.session.scalars(
        sa.select(CrmOutboxEntry.kind).where(CrmOutboxEntry.member_id == member_id).order_by(CrmOutboxEntry.seq)
    ).all()


def release_snapshot(member_id):
    db.session.expire_all()
    account = db.session.get(PointAccount, member_id)
    lots = db.session.scalars(sa.select(PointLot).where(PointLot.member_id == member_id).order_by(PointLot.id)).all()
    allocations = db.session.execute(
        sa.select(PointAllocation.points, PointLot.points)
        .join(PointLot, PointLot.id == PointAllocation.lot_id)
        .where(PointLot.member_id == member_id)
        .order_by(PointAllocation.id)
    ).all()
    return {
        "account": (account.reward_available, account.reward_pending, account.reward_debt, account.lifetime_expired),
        "lots": [(lot.points, lot.remaining, lot.status) for lot in lots],
        "allocations": [tuple(row) for row in allocations],
        "outbox": outbox_kinds(member_id),
    }


def owing_with_pending_50_and_60(member, *, earned, spent):
    """``earned`` points, ``spent`` of them, then the earning reversed whole: a debt of ``spent``;
    then two pending lots of 50 and 60."""
    old = earn(member.id, earned, "old")
    ledger.spend(member.id, spent, idempotency_key=f"spend-{member.id}", source_type="test")
    ledger.reverse(old, earned, idempotency_key=f"rev-{member.id}", source_type="order.cancelled")
    earn(member.id, 50, "p1", pending_days=7)
    earn(member.id, 60, "p2", pending_days=7)


def in_debt_with_two_pending_lots(member):
    owing_with_pending_50_and_60(member, earned=100, spent=80)  # debt 80


def one_pending_lot(member):
    earn(member.id, 100, "a")
    earn(member.id, 300, "svc", pending_days=7)


def one_due_one_not(member):
    earn(member.id, 300, "svc", pending_days=7)
    earn(member.id, 40, "later", pending_days=7, at=T0 + dt.timedelta(days=5))


def debt_larger_than_all_pending(member):
    owing_with_pending_50_and_60(member, earned=200, spent=200)  # debt 200


SCENARIOS = [in_debt_with_two_pending_lots, one_pending_lot, one_due_one_not, debt_larger_than_all_pending]


def test_the_set_based_release_leaves_the_same_rows_as_the_ledger_member_by_member(app_ctx):
    assert db.dialect == "postgresql"
    pairs = []
    for scenario in SCENARIOS:
        ours, theirs = factories.member(), factories.member()
        scenario(ours)
        scenario(theirs)
        pairs.append((ours, theirs))
    db.session.commit()
    now = T0 + dt.timedelta(days=7, hours=1)
    for _ours, theirs in pairs:
        ledger.release_lots(theirs.id, ("pending",), now=now)
    assert expiry.release_due(now) == len(pairs)
    assert expiry.release_due(now) == 0
    db.session.commit()
    for ours, theirs in pairs:
        assert release_snapshot(ours.id) == release_snapshot(theirs.id)
    debt = release_snapshot(pairs[0][0].id)
    assert debt["account"] == (30, 0, 0, 0)
    assert debt["lots"][-2:] == [(50, 0, "depleted"), (60, 30, "available")]
    assert debt["outbox"][-1] == "balance"


def test_the_release_job_commits_chunk_by_chunk_until_none_is_left(app_ctx, time_machine, monkeypatch):
    members = [factories.member() for _ in range(5)]
    for member in members:
        one_pending_lot(member)
    db.session.commit()
    time_machine.move_to(T0 + dt.timedelta(days=8), tick=False)
    monkeypatch.setattr(expiry, "release_due", lambda now=None, limit=2: expiry_release(now, limit=limit))
    assert expiry.release_due_pending() == 5
    for member in members:
        assert release_snapshot(member.id)["account"][:2] == (400, 0)


expiry_release = expiry.release_due


def platinum(member, tier_points, last_qualifying_at, *, review_on=REVIEW_DAY, tier="platinum"):
    earn(member.id, tier_points, "tp", currency="tier")
    state = policy.get_state(member.id)
    state.tier, state.review_on, state.last_qualifying_at = tier, review_on, last_qualifying_at
    db.session.flush()


def noon(day):
    return dt.datetime.combine(day, dt.time(12), tzinfo=UTC)


TIER_SCENARIOS = [
    ("platinum idle: frozen above gold", lambda m: platinum(m, 350_000, None)),
    ("platinum active: kept", lambda m: platinum(m, 350_000, noon(REVIEW_DAY - dt.timedelta(days=100)))),
    ("gold idle: to silver, all frozen", lambda m: platinum(m, 160_000, None, tier="gold")),
    ("diamond idle, nothing above platinum", lambda m: platinum(m, 200_000, None, tier="diamond")),
    (
        # The window starts at 00:00 Shanghai on 2025-06-01, i.e. 16:00 UTC the day before.
        "activity one minute inside the window",
        lambda m: platinum(m, 350_000, dt.datetime(2025, 5, 31, 16, 1, tzinfo=UTC)),
    ),
    (
        "activity one minute before the window",
        lambda m: platinum(m, 350_000, dt.datetime(2025, 5, 31, 15, 59, tzinfo=UTC)),
    ),
    (
        "a leap-day review kept (two years overdue: reviewed until in the future)",
        lambda m: platinum(m, 350_000, noon(dt.date(2026, 5, 1)), review_on=dt.date(2024, 2, 29)),
    ),
    (
        "freeze entry already written (a rerun): the tier points stay",
        lambda m: (
            platinum(m, 350_000, None),
            ledger.freeze_tier_points(m.id, 200_000, idempotency_key=f"tier-freeze:{m.id}:{REVIEW_DAY}"),
        ),
    ),
    ("not due yet", lambda m: platinum(m, 350_000, None, review_on=REVIEW_DAY + dt.timedelta(days=1))),
    (
        "opted out of service messages: the notice is skipped",
        lambda m: (platinum(m, 350_000, None), preferences.set_opted_out(m.id, {"service": True}, via="test")),
    ),
]


def tier_snapshot(member_id):
    db.session.expire_all()
    state = db.session.get(TierState, member_id)
    changes = db.session.execute(
        sa.select(TierChange.from_tier, TierChange.to_tier, TierChange.reason, TierChange.tier_points)
        .where(TierChange.member_id == member_id)
        .order_by(TierChange.id)
    ).all()
    entries = db.session.execute(
        sa.select(PointEntry.currency, PointEntry.kind, PointEntry.points, PointEntry.idempotency_key)
        .where(PointEntry.member_id == member_id)
        .order_by(PointEntry.id)
    ).all()
    notices = db.session.execute(
        sa.select(Notification.kind, Notification.period, Notification.payload, Notification.status)
        .where(Notification.member_id == member_id, Notification.kind.like("tier%"))
        .order_by(Notification.id)
    ).all()
    return {
        "state": (state.tier, state.review_on, state.last_qualifying_at),
        "tier_points": db.session.get(PointAccount, member_id).tier_points,
        "changes": [tuple(row) for row in changes],
        "entries": [(c, k, p, key.replace(str(member_id), "M")) for c, k, p, key in entries],
        "notices": [tuple(row) for row in notices],
        "outbox": outbox_kinds(member_id),
    }


def test_the_set_based_review_leaves_the_same_rows_as_review_member(app_ctx, time_machine):
    assert db.dialect == "postgresql"
    time_machine.move_to(noon(REVIEW_DAY), tick=False)
    pairs = []
    for _name, scenario in TIER_SCENARIOS:
        ours, theirs = factories.member(), factories.member()
        scenario(ours)
        scenario(theirs)
        pairs.append((ours, theirs))
    db.session.commit()
    kept = dropped = 0
    for _ours, theirs in pairs:  # as the member-by-member job: until the review date is in the future
        while (outcome := tier_review.review_member(theirs.id, today=REVIEW_DAY)) is not None:
            kept += outcome.from_tier == outcome.to_tier
            dropped += outcome.from_tier != outcome.to_tier
    db.session.commit()
    assert tier_review.review_due_pg(REVIEW_DAY, chunk=3) == {"kept": kept, "dropped": dropped}
    for (name, _scenario), (ours, theirs) in zip(TIER_SCENARIOS, pairs, strict=True):
        assert tier_snapshot(ours.id) == tier_snapshot(theirs.id), name
    first = tier_snapshot(pairs[0][0].id)
    assert first["state"][:2] == ("gold", dt.date(2027, 6, 1))
    assert first["tier_points"] == 150_000
    assert first["changes"] == [("platinum", "gold", "review_drop", 150_000)]
    assert first["notices"][0][0] == "tier_dropped"
    assert first["outbox"][-2:] == ["balance", "tier"]
    assert tier_snapshot(pairs[2][0].id)["state"][:2] == ("silver", None)
    assert tier_snapshot(pairs[6][0].id)["state"][:2] == ("platinum", dt.date(2027, 2, 28))
    assert tier_snapshot(pairs[-1][0].id)["notices"][0][3] == "skipped"


def test_a_second_review_run_changes_nothing(app_ctx, time_machine):
    time_machine.move_to(noon(REVIEW_DAY), tick=False)
    member = factories.member()
    platinum(member, 350_000, None)
    db.session.commit()
    assert tier_review.review_due_tiers() == {"kept": 0, "dropped": 1}
    before = tier_snapshot(member.id)
    assert tier_review.review_due_tiers() == {"kept": 0, "dropped": 0}
    assert tier_snapshot(member.id) == before
