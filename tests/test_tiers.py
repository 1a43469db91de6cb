"""Tier review on the anniversary: keep with a qualifying activity, else drop one and freeze."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.core.db import db
from app.points import ledger, tier_review
from app.points.models import PointAccount, PointEntry
from app.tiers import policy
from app.tiers.models import TierChange, TierState
from tests import factories

REVIEW_DAY = dt.date(2026, 6, 1)


def platinum_member(last_qualifying_at):
    member = factories.member()
    ledger.earn(
        ledger.Earning(
            member_id=member.id,
            currency="tier",
            points=350_000,
            idempotency_key=f"tp-{member.id}",
            source_type="test",
        )
    )
    state = policy.get_state(member.id)
    state.tier, state.review_on, state.last_qualifying_at = "platinum", REVIEW_DAY, last_qualifying_at
    db.session.flush()
    return member


def at(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)


def test_thresholds_come_from_tier_points(app_ctx):
    assert [policy.tier_for_points(p) for p in (0, 149_999, 150_000, 300_000, 600_000)] == [
        "silver",
        "silver",
        "gold",
        "platinum",
        "diamond",
    ]


def test_an_inactive_member_drops_one_tier_and_the_excess_tier_points_are_frozen(app_ctx):
    member = platinum_member(at(REVIEW_DAY - dt.timedelta(days=400)))
    outcome = tier_review.review_member(member.id, today=REVIEW_DAY)
    assert (outcome.from_tier, outcome.to_tier, outcome.frozen_points) == ("platinum", "gold", 200_000)
    state = db.session.get(TierState, member.id)
    assert (state.tier, state.review_on) == ("gold", dt.date(2027, 6, 1))
    assert db.session.get(PointAccount, member.id).tier_points == 150_000
    freeze = db.session.scalar(sa.select(PointEntry).where(PointEntry.kind == "expire", PointEntry.currency == "tier"))
    assert freeze.points == -200_000
    change = db.session.scalar(sa.select(TierChange).where(TierChange.member_id == member.id))
    assert (change.from_tier, change.to_tier, change.reason) == ("platinum", "gold", "review_drop")


def test_an_active_member_keeps_the_tier_until_next_year(app_ctx):
    member = platinum_member(at(REVIEW_DAY - dt.timedelta(days=100)))
    outcome = tier_review.review_member(member.id, today=REVIEW_DAY)
    assert outcome.from_tier == outcome.to_tier == "platinum"
    assert db.session.get(TierState, member.id).review_on == dt.date(2027, 6, 1)


def test_a_review_not_yet_due_changes_nothing(app_ctx):
    member = platinum_member(None)
    assert tier_review.review_member(member.id, today=REVIEW_DAY - dt.timedelta(days=1)) is None


def test_members_at_risk_are_listed_30_days_before_their_review(app_ctx):
    idle = platinum_member(None)
    active = platinum_member(at(REVIEW_DAY - dt.timedelta(days=20)))
    listed = {s.member_id for s in policy.at_risk(REVIEW_DAY - dt.timedelta(days=30))}
    assert idle.id in listed and active.id not in listed
    assert policy.at_risk(REVIEW_DAY - dt.timedelta(days=31)) == []


def test_the_nightly_job_reviews_everyone_due(app_ctx, time_machine):
    time_machine.move_to(at(REVIEW_DAY), tick=False)
    dropping = platinum_member(None)
    keeping = platinum_member(at(REVIEW_DAY - dt.timedelta(days=10)))
    assert tier_review.review_due_tiers() == {"kept": 1, "dropped": 1}
    assert db.session.get(TierState, dropping.id).tier == "gold"
    assert db.session.get(TierState, keeping.id).tier == "platinum"


@pytest.mark.parametrize("tier_points", [149_999, 0])
def test_silver_members_have_no_review(app_ctx, tier_points):
    member = factories.member()
    state = policy.get_state(member.id)
    assert (state.tier, state.review_on, policy.would_drop(state)) == ("silver", None, False)
