"""Activation: a pre-enrolled member binds WeChat (scans the order QR) and becomes active.

Purchase points earned before activation were held; activation releases them (a refund lock
still runs if one applies) and credits the enrollment welcome gift, once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.core import audit
from app.core.clock import utcnow
from app.members.models import Member
from app.points import earning, ledger


@dataclass(frozen=True)
class Activation:
    member: Member
    newly_active: bool
    released_points: int
    welcome_points: int


def activate(
    member: Member, *, at: dt.datetime | None = None, actor: tuple[str, str | int] = ("system", "wechat")
) -> Activation:
    """Idempotent: activating an active member changes nothing and credits nothing."""
    at = at or utcnow()
    if member.status != "pre_enrolled":
        return Activation(member, False, 0, 0)
    member.status = "active"
    member.activated_at = at
    # Release as of now, not the scan's timestamp: WeChat's CreateTime has whole seconds and can be
    # a moment before the held lot itself was written.
    released = ledger.release_lots(member.id, ("held",), now=utcnow())
    welcome = earning.award_event(
        member,
        "enrollment.welcome",
        {"channel": member.enrollment_channel},
        ref=f"member-{member.id}",
        occurred_at=at,
    )
    audit.record(actor=actor, action="member.activated", subject=("member", member.id))
    return Activation(member, True, released, sum(a.points for a in welcome if a.currency == "reward"))
