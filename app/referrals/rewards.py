"""Rewards per milestone through the rule engine (event types ``referral.*``, role referrer or
referee), the yearly cap per referrer, and the clawback when the order is cancelled.

Idempotency comes from the ledger keys (``earn:referral.<milestone>:referral:<id>:<rule>``) and
from the referral row lock every caller holds: a delivery sent three times pays once.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.core import events, tunables
from app.core.clock import business_day_start, to_business
from app.core.db import db
from app.dealers.models import Dealer
from app.members.models import Member
from app.points import earning, ledger, reversal
from app.points.earning import EarnedAward
from app.referrals.models import Referral
from app.tiers import policy as tiers

YEARLY_CAP = tunables.define("referrals.yearly_rewarded_cap", 10, "Rewarded referrals per referrer per calendar year")
#: The ledger event type of each rewarded milestone (rules use these in the indicator library).
EVENT_TYPES = {
    "lead": "referral.lead",
    "test_drive": "referral.test_drive",
    "order": "referral.ordered",
    "delivery": "referral.delivered",
}


def ref_of(referral: Referral) -> str:
    return f"referral:{referral.id}"


def attributes_of(referral: Referral, role: str) -> dict[str, object]:
    attributes: dict[str, object] = {"role": role}
    if referral.model_code:
        attributes["model_code"] = referral.model_code
    if referral.price_fen:
        attributes["price_fen"] = referral.price_fen
    return attributes


def _award(referral: Referral, member_id: int, role: str, milestone: str, at: dt.datetime) -> list[EarnedAward]:
    member = db.session.get(Member, member_id)
    if member is None or member.status not in ("active", "frozen", "pre_enrolled"):
        return []
    event_type = EVENT_TYPES[milestone]
    reversal.lock_reference(event_type, ref_of(referral))
    return earning.award_event(
        member,
        event_type,
        attributes_of(referral, role),
        ref=ref_of(referral),
        occurred_at=at,
        dealer=db.session.get(Dealer, referral.dealer_id),
        hold_reward=member.status == "pre_enrolled",
    )


def _publish_credit(referral: Referral, milestone: str, awards: list[EarnedAward], at: dt.datetime) -> None:
    new = [a for a in awards if a.new]
    if new:
        events.publish(
            events.ReferralRewardCredited(
                referral_id=referral.id,
                referrer_member_id=referral.referrer_member_id,
                milestone=milestone,
                reward_points=sum(a.points for a in new if a.currency == "reward"),
                tier_points=sum(a.points for a in new if a.currency == "tier"),
                at=at,
            )
        )


def rewarded_this_year(referrer_id: int, at: dt.datetime) -> int:
    year = to_business(at).year
    return int(
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Referral)
            .where(
                Referral.referrer_member_id == referrer_id,
                Referral.reward_status == "credited",
                Referral.rewarded_at >= business_day_start(dt.date(year, 1, 1)),
                Referral.rewarded_at < business_day_start(dt.date(year + 1, 1, 1)),
            )
        )
        or 0
    )


def reward_small(referral: Referral, milestone: str, at: dt.datetime) -> None:
    """Lead, test drive, order: small rewards to the referrer, if the rules give any."""
    if referral.review in ("pending", "rejected") or at > referral.expires_at:
        return
    _publish_credit(referral, milestone, _award(referral, referral.referrer_member_id, "referrer", milestone, at), at)


def reward_delivery(referral: Referral, at: dt.datetime) -> None:
    """The big one: referrer (reward + tier points) and referee, unless held, expired or capped."""
    if referral.reward_status in ("credited", "clawed_back", "capped", "expired", "rejected"):
        return  # decided before: a resent delivery changes nothing
    if referral.review == "pending":
        referral.reward_status = "held"
        return
    if referral.review == "rejected":
        referral.reward_status = "rejected"
        return
    if referral.cancelled_at is not None:
        return
    if at > referral.expires_at:
        referral.reward_status = "expired"
        return
    ledger.lock_account(referral.referrer_member_id)  # serialises the cap count of this referrer
    if rewarded_this_year(referral.referrer_member_id, at) >= YEARLY_CAP.value():
        referral.reward_status = "capped"
        return
    mine = _award(referral, referral.referrer_member_id, "referrer", "delivery", at)
    _award(referral, referral.referee_member_id, "referee", "delivery", at)  # the friend's own, not in the event
    tiers.record_qualifying_activity(referral.referrer_member_id, at)
    referral.reward_status = "credited"
    referral.rewarded_at = at
    referral.reward_points = sum(a.points for a in mine if a.currency == "reward")
    reversal.reapply_undos(EVENT_TYPES["delivery"], ref_of(referral))
    _publish_credit(referral, "delivery", mine, at)


def claw_back(referral: Referral, *, source_event_id: int | None, on: dt.date) -> int:
    """Reverse the delivery (and order) rewards: from pending first, then lots, then into debt."""
    reversed_points = 0
    for milestone in ("order", "delivery"):
        entries = reversal.undo(
            "full",
            EVENT_TYPES[milestone],
            ref_of(referral),
            undo_ref=f"cancel:{ref_of(referral)}:{milestone}",
            source_type="order.cancelled",
            source_event_id=source_event_id,
            undone_on=on,
        )
        reversed_points += sum(
            -e.points for e in entries if e.currency == "reward" and e.member_id == referral.referrer_member_id
        )
    if referral.reward_status == "credited":
        referral.reward_status = "clawed_back"
    referral.clawed_back_points += reversed_points
    return reversed_points


def pay_after_approval(referral: Referral) -> None:
    """A supervisor approved a flagged referral: pay every milestone it reached, at its own time."""
    reward_small(referral, "lead", referral.attributed_at)
    if referral.test_drive_at:
        reward_small(referral, "test_drive", referral.test_drive_at)
    if referral.ordered_at and referral.cancelled_at is None:
        reward_small(referral, "order", referral.ordered_at)
    if referral.delivered_at:
        referral.reward_status = "none"
        reward_delivery(referral, referral.delivered_at)
    elif referral.reward_status == "held":
        referral.reward_status = "none"
