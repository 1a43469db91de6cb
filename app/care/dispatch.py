"""Sending planned notifications exactly once, with several dispatchers side by side.

1. **Claim** a batch (``planned`` → ``sending``, ``claimed_at`` stamped, ``FOR UPDATE SKIP LOCKED``,
   committed): other dispatchers skip these rows. Paused kinds (``care.paused_kinds``) stay planned.
2. **Attempt**: up to ``care.send_concurrency`` calls in flight at once (``notify.deliver_batch``);
   each call's ``attempted_at`` is committed before it goes out, in one conditional UPDATE for all
   the calls starting together (only rows still carrying this dispatcher's claim stamp and never
   attempted).
3. **Record** the outcomes (sent / skipped / retry with backoff / failed), committed with the next
   attempts (the last ones on their own).

A dispatcher killed at any point leaves rows ``sending``. The sweeper puts those it claimed but
never attempted back to ``planned`` (nobody was called: they are sent later, once). The rows whose
calls were in flight — at most ``care.send_concurrency`` per dead dispatcher, since no more are
ever attempted without an outcome on record — cannot be resolved: template and subscribe messages
carry no idempotency key, WeChat gives the msgid only in the answer that was lost, and which of
those calls had gone out is not known either. The sweeper fails them as "outcome unknown" rather
than risk a second message: at most once for those rows (some may never have been sent), exactly
once for every other. Concurrency widens the bound from one row to ``care.send_concurrency`` rows;
setting it to 1 restores the one-row bound. A dispatcher's lanes (``care.dispatch_lanes``) share
those slots (``notify.Slots``), so lanes do not widen it.
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
BATCH_SIZE = tunables.define("care.claim_batch", 200, "Due notifications a dispatcher claims at once")
PAUSED_KINDS = tunables.define("care.paused_kinds", [], "Kinds not sent for now (they stay planned)")
#: Waits after each failed attempt (seconds); the last one repeats.
BACKOFF_SECONDS = (60, 300, 1800)
#: A row ``sending`` for longer than this was abandoned by a dispatcher that died.
STALLED_AFTER = dt.timedelta(minutes=10)

#: A claim: the row and the stamp that proves it is still ours.
Claim = tuple[int, dt.datetime]


def _claim_statement(due: sa.ColumnElement[bool], now: dt.datetime, limit: int) -> sa.Update:
    """UPDATE … FROM a materialized CTE that picks and locks at most ``limit`` rows. (``WHERE id IN
    (SELECT … LIMIT … SKIP LOCKED)`` is not enough: PostgreSQL may rescan that subquery and claim
    more than ``limit`` rows.)"""
    chosen = (
        sa.select(Notification.id)
        .where(Notification.status == "planned", Notification.due_at <= now, due)
        .order_by(Notification.due_at, Notification.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    paused = PAUSED_KINDS.value()
    if paused:
        chosen = chosen.where(Notification.kind.not_in(paused))
    picked = chosen.cte("chosen").prefix_with("MATERIALIZED", dialect="postgresql")
    return (
        sa.update(Notification)
        .where(Notification.id == picked.c.id, Notification.status == "planned")
        .values(status="sending", claimed_at=now, attempted_at=None)
        .returning(Notification.id, Notification.claimed_at)
        .execution_options(synchronize_session=False)
    )


def claim(notification_id: int) -> Claim | None:
    """Claim this row if it is planned, due and not paused; committed."""
    claimed = db.session.execute(_claim_statement(Notification.id == notification_id, utcnow(), 1)).first()
    db.session.commit()
    return (claimed[0], claimed[1]) if claimed else None


def claim_batch(limit: int | None = None) -> list[Claim]:
    """Claim up to ``limit`` of the most overdue planned rows nobody else holds; committed."""
    rows = db.session.execute(_claim_statement(sa.true(), utcnow(), limit or BATCH_SIZE.value())).all()
    db.session.commit()
    return sorted((row[0], row[1]) for row in rows)


def mark_attempt(notification: Notification) -> None:
    """On record before the call (the caller commits): an attempt, and when it began."""
    notification.attempted_at = utcnow()
    notification.attempts += 1


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
    """Resolve rows a dead dispatcher left ``sending`` (see the module docstring); returns how many."""
    now = now or utcnow()
    never_called = db.session.execute(
        sa.update(Notification)
        .where(
            Notification.status == "sending",
            Notification.attempted_at.is_(None),
            Notification.claimed_at < now - STALLED_AFTER,
        )
        .values(status="planned", claimed_at=None)
        .execution_options(synchronize_session=False)
    )
    mid_call = db.session.execute(
        sa.update(Notification)
        .where(Notification.status == "sending", Notification.attempted_at < now - STALLED_AFTER)
        .values(status="failed", error="outcome unknown: the sender stopped during the call", finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return (never_called.rowcount or 0) + (mid_call.rowcount or 0)


@job("periodic")
def sweep_stalled_sends() -> int:
    """Every 5 minutes: resolve sends a dead dispatcher left behind."""
    return sweep_stalled()
