"""The yearly tier review (SPEC §4): keep the tier, or drop one and freeze the tier points above
the lower tier's threshold. It lives with the points engine because freezing is a ledger entry,
written in the same transaction as the tier change, under the member's account lock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from app.core import events
from app.core.clock import BUSINESS_TZ, business_today, utcnow
from app.core.db import db, forget_memo
from app.jobs import job
from app.points import ledger
from app.points.events import BalanceChanged
from app.points.models import PointAccount
from app.tiers import policy
from app.tiers.events import TierChanged, TierChangesComing
from app.tiers.models import TIERS, TierState


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


#: Set-based review on PostgreSQL, step 1: lock the accounts of the next members (by id) whose
#: review is due, in id order (the ledger's lock, taken first as by every tier change).
_PG_LOCK = sa.text("""
WITH due AS (
    SELECT member_id FROM tier_states
    WHERE review_on IS NOT NULL AND review_on <= :today AND member_id > :after
    ORDER BY member_id LIMIT :chunk
), locked AS (
    SELECT a.member_id FROM point_accounts a JOIN due d ON d.member_id = a.member_id
    ORDER BY a.member_id
    FOR UPDATE OF a
)
SELECT (SELECT max(member_id) FROM due) AS last_member,
       coalesce((SELECT array_agg(member_id ORDER BY member_id) FROM due), '{}') AS due,
       coalesce((SELECT array_agg(member_id ORDER BY member_id) FROM locked), '{}') AS locked
""")

#: Step 2 (a snapshot taken after those locks): ``review_member`` for every locked member whose
#: tier is above Silver — the tier states locked and judged (``policy.would_drop``), kept ones
#: moved to next year's anniversary, dropped ones one tier down with their freeze entry (same
#: idempotency key; the account's tier points follow only if the entry is new), their
#: ``tier_changes`` row (the tier points after the freeze) and next review. Returns one row per
#: member reviewed; the events (and so the CRM outbox rows, the notice, the benefit quotas) are
#: published from Python for each drop.
_PG_REVIEW = sa.text("""
WITH states AS (
    SELECT t.member_id, t.tier, t.review_on, a.tier_points,
           (t.last_qualifying_at IS NULL OR t.last_qualifying_at <
               ((t.review_on - make_interval(months => CAST(:months AS integer)))::timestamp AT TIME ZONE :tz)) AS drops
    FROM tier_states t JOIN point_accounts a ON a.member_id = t.member_id
    WHERE t.member_id = ANY(CAST(:member_ids AS bigint[])) AND t.review_on IS NOT NULL
      AND t.review_on <= :today AND t.tier <> 'silver'
    FOR UPDATE OF t
), lower AS (
    SELECT r->>0 AS tier, r->>1 AS to_tier, (r->>2)::bigint AS threshold FROM jsonb_array_elements(:lower) AS r
), judged AS (
    SELECT s.*, CASE WHEN s.drops THEN w.to_tier ELSE s.tier END AS to_tier,
           CASE WHEN s.drops THEN greatest(0, s.tier_points - w.threshold) ELSE 0 END AS frozen
    FROM states s JOIN lower w ON w.tier = s.tier
), entries AS (
    INSERT INTO point_entries (member_id, currency, kind, points, idempotency_key, source_type, funder,
                               occurred_at, created_at)
    SELECT member_id, 'tier', 'expire', -frozen, 'tier-freeze:' || member_id || ':' || review_on, 'tier_review',
           'oem', :now, :now
    FROM judged WHERE frozen > 0
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING member_id, -points AS frozen
), accounts AS (
    UPDATE point_accounts a SET tier_points = a.tier_points - e.frozen, updated_at = :now
    FROM entries e WHERE a.member_id = e.member_id
), changes AS (
    INSERT INTO tier_changes (member_id, from_tier, to_tier, reason, tier_points, changed_at)
    SELECT j.member_id, j.tier, j.to_tier, 'review_drop', j.tier_points - coalesce(e.frozen, 0), :now
    FROM judged j LEFT JOIN entries e ON e.member_id = j.member_id
    WHERE j.drops
    RETURNING member_id, tier_points
), moved AS (
    UPDATE tier_states t
    SET tier = j.to_tier,
        achieved_at = CASE WHEN j.drops THEN CAST(:now AS timestamptz) ELSE t.achieved_at END,
        review_on = CASE WHEN j.drops AND j.to_tier = 'silver' THEN NULL
                         ELSE (j.review_on + interval '1 year')::date END,
        updated_at = :now
    FROM judged j WHERE t.member_id = j.member_id
)
SELECT j.member_id, j.tier, j.to_tier, j.frozen, c.tier_points
FROM judged j LEFT JOIN changes c ON c.member_id = j.member_id
ORDER BY j.member_id
""").bindparams(sa.bindparam("lower", type_=JSONB))

CHUNK_MEMBERS = 2000


def review_due_pg(today: dt.date, *, chunk: int = CHUNK_MEMBERS) -> dict[str, int]:
    """``review_member`` for every due member, set-based, committing per chunk of member ids.
    Members the statement does not cover (no account yet, or a Silver state with a review date)
    go through ``review_member``."""
    thresholds = policy.THRESHOLDS.value()
    lower = [[tier, TIERS[rank - 1], thresholds[TIERS[rank - 1]]] for rank, tier in enumerate(TIERS) if rank]
    kept = dropped = 0
    after = reviewed_before = 0
    while True:
        locked = db.session.execute(_PG_LOCK, {"today": today, "after": after, "chunk": chunk}).one()
        if locked.last_member is None:
            # A review more than a year overdue is due again after it: another pass, as the
            # member-by-member job reviews until every review date is in the future.
            if after == 0 or kept + dropped == reviewed_before:
                return {"kept": kept, "dropped": dropped}
            after, reviewed_before = 0, kept + dropped
            continue
        now = utcnow()
        rows = db.session.execute(
            _PG_REVIEW,
            {
                "today": today,
                "now": now,
                "months": policy.INACTIVITY_MONTHS.value(),
                "tz": BUSINESS_TZ.key,
                "member_ids": list(locked.locked),
                "lower": lower,
            },
        ).all()
        _expire_loaded(set(locked.locked))
        changes = [
            (TierChanged(member_id, from_tier, to_tier, "review_drop", tier_points, now), frozen)
            for member_id, from_tier, to_tier, frozen, tier_points in rows
            if from_tier != to_tier
        ]
        kept += len(rows) - len(changes)
        dropped += len(changes)
        if changes:
            events.publish(TierChangesComing(tuple(change for change, _frozen in changes)))
        for change, frozen in changes:
            if frozen:
                events.publish(BalanceChanged(change.member_id))  # as ``ledger.freeze_tier_points``
            forget_memo((policy._TIER_MEMO, change.member_id))
            events.publish(change)
        for member_id in sorted(set(locked.due) - {row.member_id for row in rows}):
            outcome = review_member(member_id, today=today)
            if outcome is not None:
                kept += outcome.from_tier == outcome.to_tier
                dropped += outcome.from_tier != outcome.to_tier
        after = locked.last_member
        db.session.commit()


def _expire_loaded(member_ids: set[int]) -> None:
    """Objects of these members' accounts and tier states loaded before the Core statement wrote
    them: read again on next access."""
    for obj in list(db.session.identity_map.values()):
        if isinstance(obj, PointAccount | TierState) and obj.member_id in member_ids:
            db.session.expire(obj)


@job("periodic", timeout=3600)
def review_due_tiers() -> dict[str, int]:
    """Review every member whose tier anniversary has come; commits per chunk (set-based on
    PostgreSQL, member by member elsewhere)."""
    today = business_today()
    if db.dialect == "postgresql":
        return review_due_pg(today)
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
