"""Sending planned notifications exactly once, with several dispatchers side by side.

A row is claimed alone (``planned`` → ``sending``, ``FOR UPDATE SKIP LOCKED``, committed) before its
call, and its outcome is committed after. A dispatcher that dies between the two leaves at most one
row in ``sending``: whether WeChat got that call cannot be known (template and subscribe messages
carry no idempotency key), so the sweeper fails it as "outcome unknown" rather than risk a second
message. That is the one case that is at most once instead of exactly once, bounded by one message
per dispatcher that died mid-call.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.care.models import Notification
from app.core import tunables
from app.core.clock import utcnow
from app.core.db import db
from app.jobs import job

MAX_ATTEMPTS = tunables.define("care.max_attempts", 4, "Attempts per notification before it fails")
#: Waits after each failed attempt (seconds); the last one repeats.
BACKOFF_SECONDS = (60, 300, 1800)
#: A row ``sending`` for longer than this was abandoned by a dispatcher that died.
STALLED_AFTER = dt.timedelta(minutes=10)


def _claim_statement(due: sa.ColumnElement[bool], now: dt.datetime) -> sa.Update:
    chosen = (
        sa.select(Notification.id)
        .where(Notification.status == "planned", Notification.due_at <= now, due)
        .order_by(Notification.due_at, Notification.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return (
        sa.update(Notification)
        .where(Notification.id == chosen)
        .values(status="sending", attempts=Notification.attempts + 1, attempted_at=now)
        .returning(Notification.id)
        .execution_options(synchronize_session=False)
    )


def claim(notification_id: int) -> bool:
    """Claim this row if it is planned and due; committed, so the attempt is on record."""
    now = utcnow()
    claimed = db.session.execute(_claim_statement(Notification.id == notification_id, now)).scalar()
    db.session.commit()
    return claimed is not None


def claim_next() -> int | None:
    """Claim the most overdue planned row nobody else holds; committed."""
    claimed = db.session.execute(_claim_statement(sa.true(), utcnow())).scalar()
    db.session.commit()
    return claimed


def retry_later(notification: Notification, reason: str) -> None:
    """Back to ``planned`` after a backoff, or ``failed`` once the attempts are used up."""
    notification.error = reason[:255]
    if notification.attempts >= MAX_ATTEMPTS.value():
        notification.status, notification.finished_at = "failed", utcnow()
        return
    wait = BACKOFF_SECONDS[min(notification.attempts, len(BACKOFF_SECONDS)) - 1]
    notification.status = "planned"
    notification.due_at = utcnow() + dt.timedelta(seconds=wait)


def sweep_stalled(now: dt.datetime | None = None) -> int:
    """Fail rows a dead dispatcher left in ``sending`` (see the module docstring); returns how many."""
    now = now or utcnow()
    result = db.session.execute(
        sa.update(Notification)
        .where(Notification.status == "sending", Notification.attempted_at < now - STALLED_AFTER)
        .values(status="failed", error="outcome unknown: the sender stopped during the call", finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


@job("periodic")
def sweep_stalled_sends() -> int:
    """Every 5 minutes: resolve sends a dead dispatcher left behind."""
    return sweep_stalled()
