"""Notifications and reminders to members: one row per message, planned in the database, sent once.

A row is the source of truth for one message: planned (with the time it is due) → sending (the
attempt is on record before the call) → sent / delivered / failed / skipped, with the reason.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType

STATUSES = ("planned", "sending", "sent", "delivered", "failed", "skipped")
#: Rows the dispatcher and the sweeper look at.
OPEN_STATUSES = ("planned", "sending")


class Notification(Base):
    """One message to one member on one channel. ``dedupe_key`` = (member, kind, period): once."""

    __tablename__ = "notifications"

    id: Mapped[BigIntPK]
    #: None for a chat reply to someone who is not (yet) a member; ``openid`` says who then.
    #: Looked up through ``ix_notifications_member_attempted`` (member first): no index of its own.
    member_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(sa.String(32))  # tier_upgrade, chat_reply, points_expiring …
    channel: Mapped[str] = mapped_column(sa.String(24))  # official_template, official_custom, miniapp_subscribe, sms
    dedupe_key: Mapped[str] = mapped_column(sa.String(128), unique=True)
    status: Mapped[str] = mapped_column(sa.String(10), default="planned")
    #: When the message may go out (a reminder's day at 09:00, or the end of quiet hours).
    due_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: What the message is about, e.g. ``2027-01-01:30d`` for points expiring then, reminded 30 days before.
    period: Mapped[str | None] = mapped_column(sa.String(64))
    payload: Mapped[dict[str, Any]]
    openid: Mapped[str | None] = mapped_column(sa.String(64))
    #: WeChat's msgid for a template message; TEMPLATESENDJOBFINISH reports back with it.
    wechat_msgid: Mapped[int | None] = mapped_column(BigIntType)
    #: The SMS provider's id for a message it accepted (Aliyun ``BizId``); its status reports carry it.
    sms_message_id: Mapped[str | None] = mapped_column(sa.String(64))
    delivery_status: Mapped[str | None] = mapped_column(sa.String(32))
    error: Mapped[str | None] = mapped_column(sa.String(255))
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: When a dispatcher took the row (``sending``); no call has been made for this claim yet.
    claimed_at: Mapped[dt.datetime | None]
    #: When the latest call to a partner began (committed before it): a row ``sending`` with this set
    #: for long was left mid-call by a dead sender; without it, the claim never reached a call.
    attempted_at: Mapped[dt.datetime | None]
    sent_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]

    __table_args__ = (
        sa.CheckConstraint(f"status IN {STATUSES}", name="status"),
        sa.Index(
            "ix_notifications_open_due",
            "due_at",
            postgresql_where=sa.text(f"status IN {OPEN_STATUSES}"),
            sqlite_where=sa.text(f"status IN {OPEN_STATUSES}"),
        ),
        sa.Index("ix_notifications_member_attempted", "member_id", "attempted_at"),  # frequency caps
        sa.Index(  # delivery reports; a planned row has no msgid yet: not indexed (cheaper planning)
            "ix_notifications_wechat_msgid",
            "wechat_msgid",
            postgresql_where=sa.text("wechat_msgid IS NOT NULL"),
            sqlite_where=sa.text("wechat_msgid IS NOT NULL"),
        ),
        sa.Index(  # SMS status reports
            "ix_notifications_sms_message_id",
            "sms_message_id",
            postgresql_where=sa.text("sms_message_id IS NOT NULL"),
            sqlite_where=sa.text("sms_message_id IS NOT NULL"),
        ),
    )


#: Opt-out categories: reminders about the membership (service) and offers (marketing).
CATEGORIES = ("service", "marketing")


class NotificationPreference(Base):
    """A member's choice for one category; no row means "wanted" (consent is checked as well)."""

    __tablename__ = "notification_preferences"

    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), primary_key=True)
    category: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    opted_out: Mapped[bool] = mapped_column(default=False)
    #: Where the member said so: ``miniapp`` or ``chat`` (a 退订 reply).
    via: Mapped[str] = mapped_column(sa.String(12))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (sa.CheckConstraint(f"category IN {CATEGORIES}", name="category"),)


class SubscribeGrant(Base):
    __tablename__ = "subscribe_grants"

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    template_id: Mapped[str] = mapped_column(sa.String(64))
    available: Mapped[int] = mapped_column(default=0)
    accepted_total: Mapped[int] = mapped_column(default=0)
    used_total: Mapped[int] = mapped_column(default=0)
    last_decision: Mapped[str] = mapped_column(sa.String(12))  # accept, reject, ban, filter
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (sa.UniqueConstraint("member_id", "template_id"),)


class SubscribeRequest(Base):
    """One ``wx.requestSubscribeMessage`` result, by the id the mini-app gave it: applied once."""

    __tablename__ = "subscribe_requests"

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    request_id: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (sa.UniqueConstraint("member_id", "request_id"),)


class MaintenanceInterval(Base):
    """How often a model needs maintenance: whichever comes first, months or km. ``default`` applies
    to every model without a row of its own."""

    __tablename__ = "maintenance_intervals"

    model_code: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    months: Mapped[int]
    km: Mapped[int]

    __table_args__ = (sa.CheckConstraint("months > 0 AND km > 0", name="positive"),)


LIFECYCLE_STAGES = ("new", "growing", "mature", "churn_risk", "churned")


class MemberLifecycle(Base):
    """A member's current lifecycle stage (SPEC §1), since when, and the interaction it was judged on.
    ``members.lifecycle_stage`` mirrors ``stage`` for readers of the member row."""

    __tablename__ = "member_lifecycle"

    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), primary_key=True)
    stage: Mapped[str] = mapped_column(sa.String(16))
    since: Mapped[dt.datetime]
    last_interaction_at: Mapped[dt.datetime | None]
    computed_at: Mapped[dt.datetime]

    __table_args__ = (
        sa.CheckConstraint(f"stage IN {LIFECYCLE_STAGES}", name="stage"),
        sa.Index("ix_member_lifecycle_stage", "stage"),
    )


class MemberLifecycleHistory(Base):
    """Append-only: every change of stage (``from_stage`` None the first time a member is judged)."""

    __tablename__ = "member_lifecycle_history"

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    from_stage: Mapped[str | None] = mapped_column(sa.String(16))
    to_stage: Mapped[str] = mapped_column(sa.String(16))
    at: Mapped[dt.datetime]

    __table_args__ = (sa.Index("ix_member_lifecycle_history_member_at", "member_id", "at"),)


CALLBACK_STATUSES = ("open", "claimed", "closed")
#: What came of a callback: the member was reached and it is settled, reached and needs more,
#: could not be reached, or did not want to talk.
CALLBACK_OUTCOMES = ("resolved", "follow_up", "unreachable", "declined")


class CallbackTask(Base):
    """A call customer service owes a member (a churn-risk win-back …): one per (member, reason, period)."""

    __tablename__ = "callback_tasks"

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    reason: Mapped[str] = mapped_column(sa.String(32))  # churn_risk
    #: What the task is about, e.g. the day the member entered churn risk: reruns add no second task.
    period: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(8), default="open")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("operators.id"))
    claimed_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    note: Mapped[str | None] = mapped_column(sa.String(500))
    #: Set when closed (``CALLBACK_OUTCOMES``); tasks closed before outcomes existed have none.
    outcome: Mapped[str | None] = mapped_column(sa.String(16))

    __table_args__ = (
        sa.UniqueConstraint("member_id", "reason", "period"),
        sa.CheckConstraint(f"status IN {CALLBACK_STATUSES}", name="status"),
        sa.CheckConstraint(f"outcome IN {CALLBACK_OUTCOMES}", name="outcome"),
        sa.Index(
            "ix_callback_tasks_open",
            "created_at",
            postgresql_where=sa.text("status = 'open'"),
            sqlite_where=sa.text("status = 'open'"),
        ),
    )


class CallbackTaskNote(Base):
    """Append-only: what the agent working a callback task wrote down between calls."""

    __tablename__ = "callback_task_notes"

    id: Mapped[BigIntPK]
    task_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("callback_tasks.id"), index=True)
    author_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("operators.id"))
    author: Mapped[str] = mapped_column(sa.String(64))  # the operator's audit actor, shown as written
    body: Mapped[str] = mapped_column(sa.String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
