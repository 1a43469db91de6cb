"""Activity points (dealer visit, survey, profile completed, daily sign-in): channels call this.

The rules (points and per-period caps) are ordinary earning rules on ``activity.*`` events, so
operators tune them like any other; ``ref`` makes each activity count once (a sign-in per day,
a survey per survey id, a visit per check-in).
"""

from __future__ import annotations

import datetime as dt

from app.core.clock import to_business, utcnow
from app.dealers.models import Dealer
from app.points import earning

ACTIVITIES = ("dealer_visit", "survey", "profile_completed", "daily_sign_in")


def record_activity(
    member: earning.Earner,
    activity: str,
    *,
    ref: str | None = None,
    dealer: Dealer | None = None,
    at: dt.datetime | None = None,
) -> int:
    """Credit an activity once per ``ref``; returns the reward points earned now (0 if capped or repeated)."""
    if activity not in ACTIVITIES:
        raise ValueError(f"unknown activity {activity!r}")
    at = at or utcnow()
    if ref is None and activity == "daily_sign_in":
        ref = to_business(at).date().isoformat()
    if ref is None and activity == "profile_completed":
        ref = "once"
    if ref is None:
        raise ValueError(f"{activity} needs a reference that identifies it")
    awards = earning.award_event(
        member, f"activity.{activity}", {}, ref=f"{member.id}:{ref}", occurred_at=at, dealer=dealer
    )
    return sum(a.points for a in awards if a.new and a.currency == "reward")
