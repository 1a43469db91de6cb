"""Activity points (dealer visit, survey, profile completed, daily sign-in, article read, content
shared): channels call this.

The rules (points and per-period caps) are ordinary earning rules on ``activity.*`` events, so
operators tune them like any other; ``ref`` makes each activity count once (a sign-in per day,
a survey per survey id, a visit per check-in, an article per article, a share per content and
day). A reference too long for the ledger's ``source_ref`` is kept as a digest (same ref, same
digest: still once).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from app.core.clock import to_business, utcnow
from app.dealers.models import Dealer
from app.points import earning

ACTIVITIES = (
    "dealer_visit",
    "survey",
    "profile_completed",
    "daily_sign_in",
    "article_read",
    "content_shared",
)
#: ``point_entries.source_ref`` is 64 characters.
SOURCE_REF_LENGTH = 64


@dataclass(frozen=True)
class ActivityCredit:
    """What an activity earned now: ``repeated`` when it was counted before, ``capped`` when a rule
    exists for it but gave nothing (the member's cap for the period, or the rule's budget)."""

    points: int
    repeated: bool
    capped: bool


def source_ref(member_id: int, ref: str) -> str:
    full = f"{member_id}:{ref}"
    if len(full) <= SOURCE_REF_LENGTH:
        return full
    return f"{member_id}:#{hashlib.sha256(ref.encode()).hexdigest()[:40]}"


def credit_activity(
    member: earning.Earner,
    activity: str,
    *,
    ref: str | None = None,
    dealer: Dealer | None = None,
    at: dt.datetime | None = None,
) -> ActivityCredit:
    """Credit an activity once per ``ref`` and say how it went."""
    if activity not in ACTIVITIES:
        raise ValueError(f"unknown activity {activity!r}")
    at = at or utcnow()
    if ref is None and activity == "daily_sign_in":
        ref = to_business(at).date().isoformat()
    if ref is None and activity == "profile_completed":
        ref = "once"
    if ref is None:
        raise ValueError(f"{activity} needs a reference that identifies it")
    event_type = f"activity.{activity}"
    awards = earning.award_event(member, event_type, {}, ref=source_ref(member.id, ref), occurred_at=at, dealer=dealer)
    points = sum(a.points for a in awards if a.new and a.currency == "reward")
    repeated = bool(awards) and not any(a.new for a in awards)
    capped = not awards and _has_rule(event_type, at)
    return ActivityCredit(points, repeated, capped)


def record_activity(
    member: earning.Earner,
    activity: str,
    *,
    ref: str | None = None,
    dealer: Dealer | None = None,
    at: dt.datetime | None = None,
) -> int:
    """Credit an activity once per ``ref``; returns the reward points earned now (0 if capped or repeated)."""
    return credit_activity(member, activity, ref=ref, dealer=dealer, at=at).points


def _has_rule(event_type: str, at: dt.datetime) -> bool:
    rule_set = earning.published_rule_set(at)
    return rule_set is not None and any(rule.event_type == event_type for rule in rule_set.rules)
