"""QR codes we asked WeChat for, red-packet campaigns, and the packets granted."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType, JSONType

QR_KINDS = ("order", "advisor", "campaign")
CAMPAIGN_STATUSES = ("draft", "active", "paused", "ended")
GRANT_STATUSES = ("reserved", "sending", "sent", "received", "failed", "refunding", "refunded")


class QrCode(Base):
    """A parametric QR code of the service account. ``scene`` is what comes back in the event."""

    __tablename__ = "qr_codes"

    id: Mapped[BigIntPK]
    kind: Mapped[str] = mapped_column(sa.String(10))
    scene: Mapped[str] = mapped_column(sa.String(64), index=True)
    permanent: Mapped[bool] = mapped_column(default=False)
    ticket: Mapped[str] = mapped_column(sa.String(128))
    url: Mapped[str] = mapped_column(sa.String(255))  # the content to render as a QR image
    expires_at: Mapped[dt.datetime | None]
    staff_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("staff.id"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("campaigns.id"))
    enrollment_token_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("enrollment_tokens.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (sa.CheckConstraint(f"kind IN {QR_KINDS}", name="kind"),)


class Campaign(Base):
    """A red-packet sign-up campaign: budget, amount per packet, daily cap, once per member."""

    __tablename__ = "campaigns"

    id: Mapped[BigIntPK]
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)  # also the QR scene: camp:<code>
    name: Mapped[str] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(10), default="draft")
    budget_fen: Mapped[int] = mapped_column(BigIntType)
    amount_fen: Mapped[int] = mapped_column(BigIntType)
    daily_cap: Mapped[int | None]  # packets per business day
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime]
    #: How members join: "qr" (scan the campaign code), "password" (send the keyword).
    channels: Mapped[list[str]] = mapped_column(JSONType)
    password: Mapped[str | None] = mapped_column(sa.String(32), unique=True)
    #: Money promised to grants that are not failed: the budget check runs against this, under lock.
    committed_fen: Mapped[int] = mapped_column(BigIntType, default=0)
    refunded_fen: Mapped[int] = mapped_column(BigIntType, default=0)
    send_name: Mapped[str] = mapped_column(sa.String(32))  # shown on the packet (≤ 10 Chinese characters)
    wishing: Mapped[str] = mapped_column(sa.String(128))
    act_name: Mapped[str] = mapped_column(sa.String(32))
    remark: Mapped[str] = mapped_column(sa.String(128))
    dealer_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.CheckConstraint(f"status IN {CAMPAIGN_STATUSES}", name="status"),
        sa.CheckConstraint("amount_fen BETWEEN 100 AND 20000", name="amount_in_range"),  # ¥1–200
        sa.CheckConstraint("committed_fen <= budget_fen", name="within_budget"),
    )


class RedPacketGrant(Base):
    """One packet for one member. ``bill_no`` is derived from the grant, so retries reuse it."""

    __tablename__ = "red_packet_grants"

    id: Mapped[BigIntPK]
    campaign_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("campaigns.id"))
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), index=True)
    openid: Mapped[str] = mapped_column(sa.String(64))
    amount_fen: Mapped[int] = mapped_column(BigIntType)
    business_date: Mapped[dt.date]  # Asia/Shanghai day of the grant, for the daily cap
    bill_no: Mapped[str | None] = mapped_column(sa.String(28), unique=True)
    status: Mapped[str] = mapped_column(sa.String(10), default="reserved")
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.String(255))
    wechat_status: Mapped[str | None] = mapped_column(sa.String(16))  # SENDING/SENT/FAILED/RECEIVED/RFUND_ING/REFUND
    send_listid: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    received_at: Mapped[dt.datetime | None]
    refunded_at: Mapped[dt.datetime | None]
    reconciled_at: Mapped[dt.datetime | None]

    __table_args__ = (
        # The race guard for "once per member": concurrent sign-ups collide here.
        sa.UniqueConstraint("campaign_id", "member_id"),
        sa.CheckConstraint(f"status IN {GRANT_STATUSES}", name="status"),
        sa.Index("ix_red_packet_grants_daily", "campaign_id", "business_date"),
        sa.Index(
            "ix_red_packet_grants_open",
            "status",
            postgresql_where=sa.text("status IN ('reserved', 'sending', 'sent', 'refunding')"),
            sqlite_where=sa.text("status IN ('reserved', 'sending', 'sent', 'refunding')"),
        ),
    )
