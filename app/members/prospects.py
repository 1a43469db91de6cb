"""A QR prospect who then buys: their empty prospect record gives way to the buyer's record.

Scanning an advisor's or a campaign's code creates a member with no personal data (consent and
phone come later). If that person then buys, the DMS cannot match them (no phone), so it
pre-enrolls the buyer as a second member with an order code. When the same WeChat account scans
that order code, the prospect record is absorbed: its WeChat identities move to the buyer, the
advisor's protection period carries over, and the prospect is closed. Only a prospect that holds
nothing but its welcome gift is absorbed automatically (the buyer gets a welcome gift of their
own); anything more is left for customer service to merge.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.core import audit
from app.core.db import db
from app.members.models import Member, Ownership, WechatIdentity
from app.points.models import PointEntry

WELCOME_RULE = "welcome_gift"


def is_empty_prospect(member: Member) -> bool:
    """No phone, no car, no points beyond the welcome gift."""
    if member.status != "active" or member.phone_index is not None:
        return False
    has_car = db.session.scalar(
        sa.select(sa.exists().where(Ownership.member_id == member.id, Ownership.ended_on.is_(None)))
    )
    other_postings = db.session.scalar(
        sa.select(
            sa.exists().where(
                PointEntry.member_id == member.id,
                sa.or_(PointEntry.kind != "earn", PointEntry.rule_code.is_distinct_from(WELCOME_RULE)),
            )
        )
    )
    return not has_car and not other_postings


def absorb(prospect: Member, *, into: Member, at: dt.datetime) -> None:
    """Move the prospect's WeChat identities and advisor attribution to ``into``; close the prospect."""
    db.session.execute(
        sa.update(WechatIdentity)
        .where(WechatIdentity.member_id == prospect.id)
        .values(member_id=into.id)
        .execution_options(synchronize_session="fetch")
    )
    protected = prospect.attribution_until is not None and prospect.attribution_until > at
    if protected and into.enrolling_staff_id is None:
        into.enrolling_staff_id = prospect.enrolling_staff_id
        into.enrolling_dealer_id = into.enrolling_dealer_id or prospect.enrolling_dealer_id
        into.attribution_until = prospect.attribution_until
    prospect.status = "closed"
    for subject, other in ((prospect, into), (into, prospect)):
        audit.record(
            actor=("member", into.id),
            action="member.prospect_absorbed",
            subject=("member", subject.id),
            details={"prospect": prospect.member_no, "buyer": into.member_no, "other": other.member_no},
        )
    db.session.flush()
