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
    member_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("members.id"), index=True)
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
    wechat_msgid: Mapped[int | None] = mapped_column(BigIntType, index=True)
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
