"""Earning from events: the published rules in force when the event happened, applied once.

Order per event: lock the member's account → evaluate rules → trim by per-member caps (race-free
behind the account lock) → trim by campaign budgets (their own row locks, taken in code order)
→ credit through the ledger with an idempotency key built from the business reference, so a DMS
resend under a new event id still earns once → upgrade the tier at once if tier points crossed a
threshold.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa

from app.core.clock import business_day_start, to_business, utcnow
from app.core.db import db, insert_if_absent
from app.dealers.models import Dealer
from app.points import ledger
from app.points.models import PointEntry, RuleBudget, RuleSet
from app.points.rules import Candidate, Facts, evaluate
from app.tiers import policy as tiers


class Earner(Protocol):
    """What earning needs to know about a member (``members.Member`` is one): the points engine
    depends on member ids and facts, never on the members package."""

    @property
    def id(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def customer_type(self) -> str: ...
    @property
    def city(self) -> str | None: ...
    @property
    def birthday(self) -> dt.date | None: ...


@dataclass(frozen=True)
class EarnedAward:
    rule_code: str
    currency: str
    points: int
    entry_id: int
    new: bool


def published_rule_set(at: dt.datetime) -> RuleSet | None:
    """The published rule set in force at ``at`` (the few published sets are cached per unit of work)."""
    session = db.session()
    published = session.info.get("published_rule_sets")
    if published is None:
        published = list(
            db.session.scalars(
                sa.select(RuleSet).where(RuleSet.status == "published").order_by(RuleSet.effective_from.desc())
            )
        )
        session.info["published_rule_sets"] = published
    for rule_set in published:
        if rule_set.effective_from <= at and (rule_set.effective_to is None or at < rule_set.effective_to):
            return rule_set
    return None


def forget_published_rule_sets() -> None:
    """Call after publishing, so this unit of work sees the new set."""
    db.session().info.pop("published_rule_sets", None)


def member_facts(
    member: Earner,
    event_type: str,
    attributes: dict[str, Any],
    occurred_at: dt.datetime,
    dealer: Dealer | None,
) -> Facts:
    return Facts(
        event_type=event_type,
        occurred_at=occurred_at,
        attributes=attributes,
        dealer_code=dealer.code if dealer else None,
        region=dealer.region if dealer else None,
        tier=tiers.current_tier(member.id),
        customer_type=member.customer_type,
        city=member.city,
        birthday=member.birthday,
    )


def _period_start(period: str, at: dt.datetime) -> dt.datetime:
    local = to_business(at).date()
    if period == "day":
        return business_day_start(local)
    if period == "month":
        return business_day_start(local.replace(day=1))
    return business_day_start(local.replace(month=1, day=1))


def _period_end(period: str, at: dt.datetime) -> dt.datetime:
    local = to_business(at).date()
    if period == "day":
        return business_day_start(local + dt.timedelta(days=1))
    if period == "month":
        last = calendar.monthrange(local.year, local.month)[1]
        return business_day_start(local.replace(day=last) + dt.timedelta(days=1))
    return business_day_start(local.replace(year=local.year + 1, month=1, day=1))


def _earned_in_period(member_id: int, rule_code: str, period: str, at: dt.datetime) -> int:
    total = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(PointEntry.points), 0)).where(
            PointEntry.member_id == member_id,
            PointEntry.rule_code == rule_code,
            PointEntry.kind == "earn",
            PointEntry.occurred_at >= _period_start(period, at),
            PointEntry.occurred_at < _period_end(period, at),
        )
    )
    return int(total)


def _within_caps(member_id: int, candidate: Candidate, at: dt.datetime) -> int:
    points = candidate.points
    for period, cap in (candidate.caps.get("per_member") or {}).items():
        points = min(points, max(0, cap - _earned_in_period(member_id, candidate.rule_code, period, at)))
    return points


def _within_budget(candidate: Candidate, points: int) -> int:
    """Take ``points`` from the rule's reserve (locked row), or what is left of it."""
    if candidate.budget_points is None or points == 0:
        return points
    insert_if_absent(
        RuleBudget,
        {"rule_code": candidate.rule_code, "issued_points": 0, "updated_at": utcnow()},
        conflict_columns=("rule_code",),
    )
    budget = db.session.scalars(
        sa.select(RuleBudget)
        .where(RuleBudget.rule_code == candidate.rule_code)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    granted = min(points, max(0, candidate.budget_points - budget.issued_points))
    budget.issued_points += granted
    budget.updated_at = utcnow()
    return granted


def award_event(
    member: Earner,
    event_type: str,
    attributes: dict[str, Any],
    *,
    ref: str,
    occurred_at: dt.datetime,
    dealer: Dealer | None = None,
    source_event_id: int | None = None,
    hold_reward: bool = False,
) -> list[EarnedAward]:
    """Credit everything the rules give for one business event (``ref`` identifies it). A frozen
    member's reward points are held until unfrozen (``members/freezing.py``)."""
    if member.status == "closed":
        return []
    hold_reward = hold_reward or member.status == "frozen"
    rule_set = published_rule_set(occurred_at)
    if rule_set is None:
        return []
    facts = member_facts(member, event_type, attributes, occurred_at, dealer)
    candidates = evaluate(list(rule_set.rules), facts)
    if not candidates:
        return []
    ledger.hold_lock(member.id)  # no statement for an account this transaction created (a newcomer's)
    results = []
    budgeted_first = sorted(candidates, key=lambda c: (c.budget_points is None, c.rule_code))
    for candidate in budgeted_first:
        key = f"earn:{event_type}:{ref}:{candidate.rule_code}"
        already = db.session.scalar(sa.select(PointEntry).where(PointEntry.idempotency_key == key))
        if already is not None:
            results.append(EarnedAward(candidate.rule_code, candidate.currency, already.points, already.id, False))
            continue
        points = _within_budget(candidate, _within_caps(member.id, candidate, occurred_at))
        if points <= 0:
            continue
        posting = ledger.earn(
            ledger.Earning(
                member_id=member.id,
                currency=candidate.currency,
                points=points,
                idempotency_key=key,
                source_type=event_type,
                source_ref=ref,
                source_event_id=source_event_id,
                rule_code=candidate.rule_code,
                rule_set_id=rule_set.id,
                basis_fen=candidate.basis_fen,
                funder=candidate.funder,
                dealer_id=dealer.id if dealer else None,
                pending_days=candidate.pending_days,
                held=hold_reward and candidate.currency == "reward",
                occurred_at=occurred_at,
            )
        )
        results.append(EarnedAward(candidate.rule_code, candidate.currency, points, posting.id, posting.new))
    if any(r.currency == "tier" and r.new for r in results):
        account = ledger.lock_account(member.id)
        tiers.apply_tier_points(member.id, account.tier_points, at=utcnow())
    return results
