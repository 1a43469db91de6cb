"""Referral codes, attributions (one per referee: first touch wins) and the devices members used."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType, JSONType

MILESTONES = ("lead", "test_drive", "order", "delivery", "cancelled")
#: none: nothing to pay yet; credited: the delivery reward is in the ledger (cooling, then available);
#: held: flagged, waiting for a supervisor; capped: the referrer's yearly cap was reached;
#: expired: the delivery came after the attribution window; clawed_back: the order was cancelled;
#: rejected: a supervisor refused the flagged referral.
REWARD_STATUSES = ("none", "credited", "held", "capped", "expired", "clawed_back", "rejected")
REVIEW_STATES = ("none", "pending", "approved", "rejected")


class ReferralCode(Base):
    """A member's referral code: an opaque key (no personal data) used in the share link and as
    the mini-app code's ``scene``; the mini-app code image is cached here once drawn by WeChat."""

    __tablename__ = "referral_codes"

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), unique=True)
    code: Mapped[str] = mapped_column(sa.String(16), unique=True)
    wxacode_png: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    wxacode_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Referral(Base):
    """One referee attributed to one referrer, with its milestones, fraud flags and reward state.
    One current referral per referee (a partial unique index): the first touch wins even when two
    referrers race; once its window has passed without a delivery, a new touch supersedes it."""

    __tablename__ = "referrals"

    id: Mapped[BigIntPK]
    referrer_member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    referee_member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    code: Mapped[str] = mapped_column(sa.String(16))
    dealer_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    lead_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("sales_leads.id"))
    #: SHA-256 (keyed) of the device id the mini-app sent, never the id itself.
    device_hash: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    milestone: Mapped[str] = mapped_column(sa.String(12), default="lead")
    reward_status: Mapped[str] = mapped_column(sa.String(12), default="none")
    review: Mapped[str] = mapped_column(sa.String(10), default="none")
    flags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    attributed_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    test_drive_at: Mapped[dt.datetime | None]
    order_no: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    ordered_at: Mapped[dt.datetime | None]
    delivered_at: Mapped[dt.datetime | None]
    price_fen: Mapped[int | None] = mapped_column(BigIntType)
    model_code: Mapped[str | None] = mapped_column(sa.String(32))
    cancelled_at: Mapped[dt.datetime | None]
    rewarded_at: Mapped[dt.datetime | None]
    #: The referrer's delivery reward (reward points) as credited, for the funnel.
    reward_points: Mapped[int] = mapped_column(default=0)
    clawed_back_points: Mapped[int] = mapped_column(default=0)
    #: A later touch after the window took over (this attribution lapsed without a delivery).
    superseded_at: Mapped[dt.datetime | None]
    reviewed_by: Mapped[str | None] = mapped_column(sa.String(64))
    reviewed_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        sa.CheckConstraint(f"milestone IN {MILESTONES}", name="milestone"),
        sa.CheckConstraint(f"reward_status IN {REWARD_STATUSES}", name="reward_status"),
        sa.CheckConstraint(f"review IN {REVIEW_STATES}", name="review"),
        sa.CheckConstraint("referrer_member_id <> referee_member_id", name="not_self"),
        sa.Index(
            "uq_referrals_current_referee",
            "referee_member_id",
            unique=True,
            postgresql_where=sa.text("superseded_at IS NULL"),
            sqlite_where=sa.text("superseded_at IS NULL"),
        ),
        sa.Index("ix_referrals_referrer_rewarded", "referrer_member_id", "rewarded_at"),
        sa.Index("ix_referrals_code_attributed", "code", "attributed_at"),
        sa.Index("ix_referrals_dealer_attributed", "dealer_id", "attributed_at"),
        sa.Index("ix_referrals_attributed_at", "attributed_at"),
        sa.Index("ix_referrals_review_pending", "review", postgresql_where=sa.text("review = 'pending'")),
    )


class MemberDevice(Base):
    """A device (keyed hash of the mini-app's device id) a member used: self-referral by a shared
    device and shared-device clusters are found through it."""

    __tablename__ = "member_devices"

    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), primary_key=True)
    device_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True, index=True)
    first_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
