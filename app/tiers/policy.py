"""Tier policy (SPEC §4): tier from *earned tier points* (never from the balance), immediate
upgrade, a yearly review on the tier anniversary that drops one tier after 12 months without a
value-contributing activity, and the "at risk" list 30 days before a review. The review itself
(``points.tier_review``) freezes tier points in the ledger; a change is published as
``TierChanged`` for whoever tells the member.

Lock order everywhere: the member's point account first (``ledger.lock_account``), then the tier
state. Every caller that changes a tier holds the account lock already.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Collection

import sqlalchemy as sa

from app.core import events, tunables
from app.core.clock import business_day_start, business_today, to_business, utcnow
from app.core.db import db, forget_memo, memo_in_transaction, remember_in_transaction
from app.tiers.events import TierChanged
from app.tiers.models import TIERS, TierChange, TierState

THRESHOLDS = tunables.define(
    "tiers.thresholds",
    {"silver": 0, "gold": 150_000, "platinum": 300_000, "diamond": 600_000},
    "Tier points needed for each tier",
)
INACTIVITY_MONTHS = tunables.define(
    "tiers.inactivity_months",
    12,
    "Months without purchase, service, insurance or referral before a review drops a tier",
)
AT_RISK_DAYS = tunables.define("tiers.at_risk_days", 30, "Days before a review when a member at risk is told")

#: Activities that keep a tier (SPEC §4); the points engine records them.
QUALIFYING_ACTIVITIES = ("vehicle.delivered", "service.completed", "insurance.renewed", "referral.delivered")


def tier_rank(tier: str) -> int:
    return TIERS.index(tier)


def tier_for_points(tier_points: int) -> str:
    thresholds = THRESHOLDS.value()
    qualified = [tier for tier in TIERS if tier_points >= thresholds[tier]]
    return qualified[-1] if qualified else "silver"


def next_tier(tier: str) -> str | None:
    rank = tier_rank(tier)
    return TIERS[rank + 1] if rank + 1 < len(TIERS) else None


def anniversary(day: dt.date, years: int = 1) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def get_state(member_id: int, *, lock: bool = False) -> TierState:
    """The member's tier state (Silver until something happens), optionally locked."""
    query = sa.select(TierState).where(TierState.member_id == member_id)
    if lock:
        query = query.with_for_update()
    state = db.session.scalar(query)
    if state is None:
        state = TierState(member_id=member_id, tier="silver", achieved_at=utcnow(), review_on=None)
        db.session.add(state)
        db.session.flush()
    return state


_TIER_MEMO = "current_tier"


def current_tier(member_id: int) -> str:
    """The member's tier; read once per transaction until a tier state is written (the mini-app's
    session read brings it along, ``remember_current_tier``)."""
    return memo_in_transaction(
        (_TIER_MEMO, member_id),
        lambda: db.session.scalar(sa.select(TierState.tier).where(TierState.member_id == member_id)) or "silver",
        models=(TierState,),
    )


def remember_current_tier(member_id: int, tier: str | None) -> None:
    """The tier read with something else in this transaction (None: no tier state yet, Silver)."""
    remember_in_transaction((_TIER_MEMO, member_id), tier or "silver", models=(TierState,))


def current_tiers(member_ids: Collection[int]) -> dict[int, str]:
    """``current_tier`` of many members in one query."""
    ids = sorted(set(member_ids))
    rows = db.session.execute(sa.select(TierState.member_id, TierState.tier).where(TierState.member_id.in_(ids)))
    found = {member_id: tier for member_id, tier in rows}
    return {member_id: found.get(member_id) or "silver" for member_id in ids}


def change_tier(state: TierState, to_tier: str, reason: str, tier_points: int, at: dt.datetime) -> TierChange:
    change = TierChange(
        member_id=state.member_id,
        from_tier=state.tier,
        to_tier=to_tier,
        reason=reason,
        tier_points=tier_points,
        changed_at=at,
    )
    db.session.add(change)
    previous = state.tier
    state.tier = to_tier
    forget_memo((_TIER_MEMO, state.member_id))  # read again (after the autoflush), not remembered
    state.achieved_at = at
    state.review_on = None if to_tier == "silver" else anniversary(to_business(at).date())
    events.publish(TierChanged(state.member_id, previous, to_tier, reason, tier_points, at))
    return change


def apply_tier_points(member_id: int, tier_points: int, *, at: dt.datetime | None = None) -> TierChange | None:
    """Upgrade at once when the threshold is crossed; a reversal may bring the tier down again."""
    at = at or utcnow()
    state = get_state(member_id, lock=True)
    eligible = tier_for_points(tier_points)
    if tier_rank(eligible) > tier_rank(state.tier):
        return change_tier(state, eligible, "upgrade", tier_points, at)
    return None


def apply_reversal(member_id: int, tier_points: int, *, at: dt.datetime | None = None) -> TierChange | None:
    """After tier points were reversed (a cancelled order), the tier follows them down."""
    at = at or utcnow()
    state = get_state(member_id, lock=True)
    eligible = tier_for_points(tier_points)
    if tier_rank(eligible) < tier_rank(state.tier):
        return change_tier(state, eligible, "reversal", tier_points, at)
    return None


def merge_tiers(survivor_id: int, merged_id: int, tier_points: int, *, at: dt.datetime | None = None) -> str:
    """After a merge the survivor holds the higher of both tiers, or more if the combined tier
    points qualify for it (a ``merge`` change, published like any other)."""
    at = at or utcnow()
    survivor, merged = get_state(survivor_id, lock=True), get_state(merged_id, lock=True)
    target = max((survivor.tier, merged.tier, tier_for_points(tier_points)), key=tier_rank)
    if tier_rank(target) > tier_rank(survivor.tier):
        change_tier(survivor, target, "merge", tier_points, at)
    return survivor.tier


def record_qualifying_activity(member_id: int, at: dt.datetime) -> None:
    state = get_state(member_id, lock=True)
    if state.last_qualifying_at is None or at > state.last_qualifying_at:
        state.last_qualifying_at = at


def _inactive_since(review_on: dt.date) -> dt.datetime:
    """The start of the activity window that a review looks at (12 months before it)."""
    index = review_on.year * 12 + review_on.month - 1 - INACTIVITY_MONTHS.value()
    year, month = index // 12, index % 12 + 1
    day = min(review_on.day, calendar.monthrange(year, month)[1])
    return business_day_start(dt.date(year, month, day))


def would_drop(state: TierState) -> bool:
    """No qualifying activity in the 12 months before the review date."""
    if state.review_on is None:
        return False
    return state.last_qualifying_at is None or state.last_qualifying_at < _inactive_since(state.review_on)


def would_drop_on(review_on: dt.date) -> sa.ColumnElement[bool]:
    """``would_drop`` in SQL for the tier states reviewed on ``review_on`` (one activity window)."""
    since = _inactive_since(review_on)
    return sa.and_(
        TierState.review_on == review_on,
        sa.or_(TierState.last_qualifying_at.is_(None), TierState.last_qualifying_at < since),
    )


def due_for_review(today: dt.date, limit: int) -> list[int]:
    return list(
        db.session.scalars(
            sa.select(TierState.member_id)
            .where(TierState.review_on.is_not(None), TierState.review_on <= today)
            .order_by(TierState.review_on, TierState.member_id)
            .limit(limit)
        )
    )


def at_risk(today: dt.date | None = None, *, within_days: int | None = None, limit: int = 1000) -> list[TierState]:
    """Members whose review falls within ``within_days`` and who would drop if nothing happens."""
    today = today or business_today()
    horizon = today + dt.timedelta(days=AT_RISK_DAYS.value() if within_days is None else within_days)
    candidates = db.session.scalars(
        sa.select(TierState)
        .where(TierState.review_on.is_not(None), TierState.review_on <= horizon, TierState.review_on >= today)
        .order_by(TierState.review_on)
        .limit(limit)
    )
    return [state for state in candidates if would_drop(state)]


def history(member_id: int) -> list[TierChange]:
    return list(
        db.session.scalars(
            sa.select(TierChange)
            .where(TierChange.member_id == member_id)
            .order_by(TierChange.changed_at, TierChange.id)
        )
    )
