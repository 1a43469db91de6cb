"""The yearly tier review (SPEC §4): keep the tier, or drop one and freeze the tier points above
the lower tier's threshold. It lives with the points engine because freezing is a ledger entry,
written in the same transaction as the tier change, under the member's account lock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.core.clock import business_today, utcnow
from app.core.db import db
from app.jobs import job
from app.points import ledger
from app.tiers import policy
from app.tiers.models import TIERS


@dataclass(frozen=True)
class ReviewOutcome:
    member_id: int
    from_tier: str
    to_tier: str
    frozen_points: int


def review_member(member_id: int, *, today: dt.date | None = None) -> ReviewOutcome | None:
    """The yearly review of one member, if due. Frozen tier points no longer count toward
    regaining the tier."""
    today = today or business_today()
    account = ledger.lock_account(member_id)
    state = policy.get_state(member_id, lock=True)
    if state.review_on is None or state.review_on > today:
        return None
    review_on = state.review_on
    if not policy.would_drop(state):
        state.review_on = policy.anniversary(review_on)
        return ReviewOutcome(member_id, state.tier, state.tier, 0)
    from_tier = state.tier
    to_tier = TIERS[policy.tier_rank(from_tier) - 1]
    frozen = max(0, account.tier_points - policy.THRESHOLDS.value()[to_tier])
    if frozen:
        ledger.freeze_tier_points(member_id, frozen, idempotency_key=f"tier-freeze:{member_id}:{review_on}")
    policy.change_tier(state, to_tier, "review_drop", account.tier_points, utcnow())
    if to_tier != "silver":
        state.review_on = policy.anniversary(review_on)
    return ReviewOutcome(member_id, from_tier, to_tier, frozen)


@job("periodic", timeout=3600)
def review_due_tiers() -> dict[str, int]:
    """Review every member whose tier anniversary has come; commits per chunk."""
    today = business_today()
    kept = dropped = 0
    while True:
        member_ids = policy.due_for_review(today, limit=500)
        if not member_ids:
            return {"kept": kept, "dropped": dropped}
        for member_id in member_ids:
            outcome = review_member(member_id, today=today)
            if outcome is not None:
                kept += outcome.from_tier == outcome.to_tier
                dropped += outcome.from_tier != outcome.to_tier
        db.session.commit()
