"""Stored referral milestones replayed for a rule simulation (``points.simulation``): a draft
that changes a referral reward reports what a month of real referrals would have cost."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import sqlalchemy as sa

from app.core.db import db
from app.dealers.models import Dealer
from app.members.models import Member
from app.points.simulation import ReplayedEvent
from app.referrals.models import Referral
from app.referrals.rewards import EVENT_TYPES, attributes_of

_TIMES = {
    "lead": Referral.attributed_at,
    "test_drive": Referral.test_drive_at,
    "order": Referral.ordered_at,
    "delivery": Referral.delivered_at,
}


def referral_events(since: dt.datetime, until: dt.datetime) -> Iterator[ReplayedEvent]:
    """Each milestone reached in [since, until) by a referral a supervisor did not refuse."""
    for milestone, column in _TIMES.items():
        rows = db.session.scalars(
            sa.select(Referral)
            .where(column >= since, column < until, Referral.review != "rejected")
            .order_by(column, Referral.id)
            .execution_options(yield_per=500)
        )
        for referral in rows:
            at = getattr(referral, column.key)
            dealer = db.session.get(Dealer, referral.dealer_id)
            roles = [("referrer", referral.referrer_member_id)]
            if milestone == "delivery":
                roles.append(("referee", referral.referee_member_id))
            for role, member_id in roles:
                yield ReplayedEvent(
                    member=db.session.get(Member, member_id),
                    event_type=EVENT_TYPES[milestone],
                    attributes=attributes_of(referral, role),
                    occurred_at=at,
                    dealer=dealer,
                )
