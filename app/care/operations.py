"""Operator controls: pause and resume a kind, resend one notification, a member's history, and
delivery rates per kind and channel. Every change is audited; so is every read of a member's
history (by the channel that serves it, ``members.access``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from app.care import dispatch, notify
from app.care.models import OPEN_STATUSES, Notification
from app.core import audit, tunables
from app.core.clock import utcnow
from app.core.db import db, insert_if_absent
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.i18n import _l

#: A notification in one of these states may be sent again by an operator.
RESENDABLE = ("sent", "delivered", "failed", "skipped")
#: Counted as reaching the member in the delivery rates.
REACHED = ("sent", "delivered")


def paused_kinds() -> list[str]:
    return list(dispatch.PAUSED_KINDS.value())


def set_paused(kind: str, paused: bool, *, actor: tuple[str, str | int], reason: str | None = None) -> list[str]:
    """Pause (rows stay planned, nothing is claimed) or resume a kind; audited as a program setting."""
    kinds = set(paused_kinds())
    kinds = kinds | {kind} if paused else kinds - {kind}
    tunables.set_value(dispatch.PAUSED_KINDS.key, sorted(kinds), actor=actor, reason=reason)
    return sorted(kinds)


def resend(
    notification_id: int, *, actor: tuple[str, str | int], reason: str, member_id: int | None = None
) -> Notification:
    """A new message with the same content, due now (the member's rules apply again at send time).
    Two operators clicking at once make one resend; each resend is audited. With ``member_id`` (the
    console's member page) a notification of another member answers like none."""
    reason = reason.strip()
    if not reason or len(reason) > 255:
        raise ValidationFailed(fields={"reason": [_l("Give a reason of at most 255 characters.")]})
    original = db.session.get(Notification, notification_id)
    if original is None or (member_id is not None and original.member_id != member_id):
        raise NotFound(_l("No notification has this id."))
    if original.status not in RESENDABLE or original.kind == "chat_reply":
        raise Conflict(_l("This notification cannot be resent while it is %(status)s.", status=original.status))
    earlier = db.session.scalar(
        sa.select(sa.func.count()).where(Notification.dedupe_key.like(f"resend:{original.id}:%"))
    )
    now = utcnow()
    new_id = insert_if_absent(
        Notification,
        {
            "member_id": original.member_id,
            "kind": original.kind,
            "channel": original.channel,
            "status": "planned",
            "dedupe_key": f"resend:{original.id}:{(earlier or 0) + 1}",
            "period": original.period,
            "payload": original.payload,
            "attempts": 0,
            "created_at": now,
            "due_at": now,
        },
        conflict_columns=("dedupe_key",),
    )
    if new_id is None:
        raise Conflict(_l("This notification is being resent already."))
    notify.send_notification.after_commit(new_id, job_id=f"notification-{new_id}")
    audit.record(
        actor=actor,
        action="notification.resent",
        subject=("notification", original.id),
        reason=reason,
        details={"resend_id": new_id, "member_id": original.member_id, "kind": original.kind},
    )
    return db.session.get(Notification, new_id)  # type: ignore[return-value]


def history(member_id: int, *, page: int, per_page: int) -> tuple[list[Notification], int]:
    """The member's notifications, newest first."""
    query = sa.select(Notification).where(Notification.member_id == member_id)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = db.session.scalars(
        query.order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return list(rows), total


@dataclass(frozen=True)
class Rate:
    kind: str
    channel: str
    total: int
    reached: int
    delivered: int
    failed: int
    skipped: int
    open: int

    @property
    def delivery_rate(self) -> float | None:
        """Share of the finished messages that reached the member (None before any finished)."""
        finished = self.total - self.open
        return round(self.reached / finished, 4) if finished else None


def delivery_rates(since: dt.datetime, until: dt.datetime | None = None) -> list[Rate]:
    """Per kind and channel, over the notifications planned in [since, until)."""
    counted = {
        "reached": Notification.status.in_(REACHED),
        "delivered": Notification.status == "delivered",
        "failed": Notification.status == "failed",
        "skipped": Notification.status == "skipped",
        "open": Notification.status.in_(("planned", "sending")),
    }
    query = (
        sa.select(
            Notification.kind,
            Notification.channel,
            sa.func.count().label("total"),
            *(sa.func.count().filter(condition).label(name) for name, condition in counted.items()),
        )
        .where(Notification.created_at >= since, Notification.created_at < (until or utcnow() + dt.timedelta(1)))
        .group_by(Notification.kind, Notification.channel)
        .order_by(Notification.kind, Notification.channel)
    )
    return [Rate(**row._mapping) for row in db.session.execute(query)]


@dataclass(frozen=True)
class Backlog:
    """Notifications not sent yet: planned for later, due now (or overdue), being sent."""

    planned: int
    due: int
    sending: int
    oldest_due_at: dt.datetime | None


def backlog(now: dt.datetime | None = None) -> Backlog:
    """One read over the partial index of open notifications (``ix_notifications_open_due``)."""
    now = now or utcnow()
    is_due = sa.and_(Notification.status == "planned", Notification.due_at <= now)
    row = db.session.execute(
        sa.select(
            sa.func.count().filter(Notification.status == "planned", Notification.due_at > now),
            sa.func.count().filter(is_due),
            sa.func.count().filter(Notification.status == "sending"),
            sa.func.min(Notification.due_at).filter(is_due),
        ).where(Notification.status.in_(OPEN_STATUSES))
    ).one()
    return Backlog(planned=int(row[0]), due=int(row[1]), sending=int(row[2]), oldest_due_at=row[3])
