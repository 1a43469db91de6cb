"""Property-based tests: random sequences of earn / spend / reverse / expire / release.

After every step: the stored balances equal the sums of the lots (less any debt), the entries sum
to the balance, and each spend took the soonest-expiring lots first.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.db import db
from app.points import expiry, ledger
from app.points.models import PointAccount, PointAllocation, PointEntry, PointLot
from tests import factories

START = dt.datetime(2025, 1, 15, 4, 0, tzinfo=dt.UTC)
_keys = itertools.count()

operations = st.lists(
    st.one_of(
        st.tuples(st.just("earn"), st.integers(1, 500), st.booleans(), st.integers(0, 90)),
        st.tuples(st.just("spend"), st.integers(1, 600)),
        st.tuples(st.just("reverse"), st.integers(0, 30), st.integers(1, 600)),
        st.tuples(
            st.just("release"),
        ),
        st.tuples(
            st.just("expire"),
        ),
        st.tuples(st.just("wait"), st.integers(1, 400)),
    ),
    min_size=1,
    max_size=25,
)


def _invariants(member_id: int) -> None:
    db.session.flush()
    account = db.session.get(PointAccount, member_id)
    db.session.refresh(account)
    lots = db.session.scalars(sa.select(PointLot).where(PointLot.member_id == member_id)).all()
    spendable = sum(lot.remaining for lot in lots if lot.status == "available")
    pending = sum(lot.remaining for lot in lots if lot.status in ("pending", "held"))
    assert account.reward_available == spendable - account.reward_debt
    assert account.reward_pending == pending
    assert account.reward_debt >= 0 and account.reward_pending >= 0
    assert account.reward_available >= 0 or account.reward_debt > 0
    assert not (account.reward_debt and spendable)
    total = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(PointEntry.points), 0)).where(
            PointEntry.member_id == member_id, PointEntry.currency == "reward"
        )
    )
    assert total == account.reward_available + account.reward_pending
    for lot in lots:
        assert 0 <= lot.remaining <= lot.points


def _spend_took_soonest_first(member_id: int, entry_id: int, before: list[tuple[int, dt.datetime, int]]) -> None:
    """``before``: spendable (lot id, expiry, remaining) at spend time, in spending order."""
    taken = dict(
        db.session.execute(
            sa.select(PointAllocation.lot_id, PointAllocation.points).where(PointAllocation.entry_id == entry_id)
        ).all()
    )
    touched = [i for i, (lot_id, _exp, _rem) in enumerate(before) if lot_id in taken]
    assert touched == list(range(len(touched))), "lots were not drained as a prefix in expiry order"
    for lot_id, _expires, remaining in before[: max(touched, default=-1)]:
        assert -taken[lot_id] == remaining, "an earlier-expiring lot was left with points"


@pytest.mark.parametrize("implementation", ["auto", "orm"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=operations)
def test_ledger_invariants_hold_for_any_sequence(app_ctx, monkeypatch, implementation, steps):
    monkeypatch.setattr(ledger.posting, "IMPLEMENTATION", implementation)
    member = factories.member()
    now = START
    earned: list[PointEntry] = []
    for step in steps:
        kind = step[0]
        if kind == "earn":
            now += dt.timedelta(days=step[3])  # lots spread over months, so expiry order matters
            posting = ledger.earn(
                ledger.Earning(
                    member_id=member.id,
                    currency="reward",
                    points=step[1],
                    idempotency_key=f"p-{next(_keys)}",
                    source_type="prop",
                    pending_days=7 if step[2] else 0,
                ),
                at=now,
            )
            earned.append(db.session.get(PointEntry, posting.id))
        elif kind == "spend":
            before = [
                (lot.id, lot.expires_at, lot.remaining)
                for lot in db.session.scalars(
                    sa.select(PointLot)
                    .where(
                        PointLot.member_id == member.id,
                        PointLot.status == "available",
                        PointLot.remaining > 0,
                    )
                    .order_by(PointLot.expires_at, PointLot.id)
                )
            ]
            try:
                entry = ledger.spend(member.id, step[1], idempotency_key=f"p-{next(_keys)}", source_type="prop", at=now)
            except ledger.InsufficientPoints:
                assert sum(r for _, _, r in before) - db.session.get(PointAccount, member.id).reward_debt < step[1]
            else:
                _spend_took_soonest_first(member.id, entry.id, before)
        elif kind == "reverse" and earned:
            original = earned[step[1] % len(earned)]
            left = original.points - ledger.reversed_points(original.id)
            if left > 0:
                ledger.reverse(
                    original,
                    min(left, step[2]),
                    idempotency_key=f"p-{next(_keys)}",
                    source_type="prop",
                    at=now,
                )
        elif kind == "release":
            ledger.release_lots(member.id, ("pending",), now=now)
        elif kind == "expire":
            expiry.expire_due(now)
        elif kind == "wait":
            now += dt.timedelta(days=step[1])
        _invariants(member.id)
