"""Frequency caps for marketing messages: at most ``per_day`` a day and ``per_week`` in any seven
days (Asia/Shanghai calendar days); service kinds are exempt.

Counted at send time, under a per-member advisory lock held until the attempt is committed, over
the member's marketing rows that were sent or are in flight (``attempted_at`` set). A second
dispatcher holding another message for the same member waits for the lock and then sees the first
one counted, so the cap holds with any number of dispatchers. A capped message is postponed to the
first moment the caps allow, not dropped; one that would wait beyond ``stale_after_days`` after it
was planned is skipped with the reason kept (an offer that late has lost its point).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.care.models import Notification
from app.care.rules import MARKETING_KINDS
from app.core import tunables
from app.core.clock import business_day_start, to_business
from app.core.db import db

CAPS = tunables.define(
    "care.marketing_caps",
    {"per_day": 1, "per_week": 4, "stale_after_days": 14},
    "Marketing messages per member: at most per_day a day and per_week in 7 days; postponed, then skipped",
)
#: Statuses that count: sent, delivered, or in flight (``sending`` with a call started).
COUNTED = ("sending", "sent", "delivered")
_LOCK_SPACE = 0x43415245  # "CARE": keeps these advisory locks apart from other users of the key space


def lock_member(member_id: int) -> None:
    """Serialize cap decisions for one member until the transaction ends (PostgreSQL only)."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_SPACE, member_id)))


def next_allowed(notification: Notification, now: dt.datetime, *, pending: int = 0) -> dt.datetime | None:
    """None if this marketing message may go now; otherwise the first moment the caps allow it.
    ``pending``: the member's messages a dispatcher already let through today in the same batch
    (attempts not yet on record; they count as sent today)."""
    caps = CAPS.value()
    today = to_business(now).date()
    week_start = business_day_start(today - dt.timedelta(days=6))
    sent_days = [
        to_business(at).date()
        for at in db.session.scalars(
            sa.select(Notification.attempted_at)
            .where(
                Notification.member_id == notification.member_id,
                Notification.id != notification.id,
                Notification.kind.in_(MARKETING_KINDS.value()),
                Notification.status.in_(COUNTED),
                Notification.attempted_at >= week_start,
            )
            .order_by(Notification.attempted_at)
        )
    ] + [today] * pending
    candidates = []
    if sum(1 for day in sent_days if day == today) >= caps["per_day"]:
        candidates.append(business_day_start(today + dt.timedelta(days=1)))
    if len(sent_days) >= caps["per_week"]:
        # Allowed again once enough of the counted ones have left the 7-day window.
        oldest_that_must_leave = sent_days[len(sent_days) - caps["per_week"]]
        candidates.append(business_day_start(oldest_that_must_leave + dt.timedelta(days=7)))
    return max(candidates) if candidates else None


def too_late(notification: Notification, allowed_at: dt.datetime) -> bool:
    return allowed_at > notification.created_at + dt.timedelta(days=CAPS.value()["stale_after_days"])
