"""Notifications sent to members, one row per send, with the delivery result."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType

STATUSES = ("queued", "sent", "delivered", "failed", "skipped")


class Notification(Base):
    """One message to one member on one channel. ``dedupe_key`` = (member, kind, period): once."""

    __tablename__ = "notifications"

    id: Mapped[BigIntPK]
    #: None for a chat reply to someone who is not (yet) a member; ``openid`` says who then.
    member_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("members.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(32))  # tier_upgrade, chat_reply, points_expiring …
    channel: Mapped[str] = mapped_column(sa.String(24))  # official_template, official_custom, miniapp_subscribe, sms
    dedupe_key: Mapped[str] = mapped_column(sa.String(128), unique=True)
    status: Mapped[str] = mapped_column(sa.String(10), default="queued")
    payload: Mapped[dict[str, Any]]
    openid: Mapped[str | None] = mapped_column(sa.String(64))
    #: WeChat's msgid for a template message; TEMPLATESENDJOBFINISH reports back with it.
    wechat_msgid: Mapped[int | None] = mapped_column(BigIntType, index=True)
    delivery_status: Mapped[str | None] = mapped_column(sa.String(32))
    error: Mapped[str | None] = mapped_column(sa.String(255))
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]

    __table_args__ = (sa.CheckConstraint(f"status IN {STATUSES}", name="status"),)


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
