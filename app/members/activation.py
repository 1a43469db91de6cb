"""Activation and the welcome gift.

A pre-enrolled member (enrolled on purchase by the DMS) binds WeChat and becomes active: purchase
points earned before activation were held and are released now (a refund lock still runs if one
applies). Every new member gets the enrollment welcome gift exactly once, whichever way they
joined: it is an earning rule on the ``enrollment.welcome`` event, keyed by the member, so the
amount is the program's rule (SPEC §3: 500) and a second credit is impossible.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.core import audit, events
from app.core.clock import utcnow
from app.members.events import MemberActivated, MemberChanged
from app.members.models import Member
from app.points import earning, ledger


@dataclass(frozen=True)
class Activation:
    member: Member
    newly_active: bool
    released_points: int
    welcome_points: int


def credit_welcome_gift(member: Member, at: dt.datetime | None = None) -> int:
    """Credit the welcome gift (once per member) and announce ``MemberActivated`` (care welcomes the
    member, once); returns the reward points credited by this call."""
    at = at or utcnow()
    awards = earning.award_event(
        member,
        "enrollment.welcome",
        {"channel": member.enrollment_channel},
        ref=f"member-{member.id}",
        occurred_at=at,
    )
    events.publish(MemberActivated(member.id, at))
    return sum(award.points for award in awards if award.new and award.currency == "reward")


def activate(
    member: Member, *, at: dt.datetime | None = None, actor: tuple[str, str | int] = ("system", "wechat")
) -> Activation:
    """Idempotent: activating an active member changes nothing and credits nothing."""
    at = at or utcnow()
    if member.status != "pre_enrolled":
        return Activation(member, False, 0, 0)
    member.status = "active"
    events.publish(MemberChanged(member.id))
    member.activated_at = at
    # Release as of now, not the scan's timestamp: WeChat's CreateTime has whole seconds and can be
    # a moment before the held lot itself was written.
    released = ledger.release_lots(member.id, ("held",), now=utcnow())
    welcome = credit_welcome_gift(member, at)
    audit.record(actor=actor, action="member.activated", subject=("member", member.id))
    return Activation(member, True, released, welcome)
