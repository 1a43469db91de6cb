"""A member's tier, its yearly review date, and the history of every change."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType

TIERS = ("silver", "gold", "platinum", "diamond")


class TierState(Base):
    __tablename__ = "tier_states"

    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), primary_key=True)
    tier: Mapped[str] = mapped_column(sa.String(10), default="silver")
    achieved_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: Yearly review on the tier anniversary (business date); none while Silver.
    review_on: Mapped[dt.date | None]
    #: Last purchase, service visit, insurance renewal or successful referral.
    last_qualifying_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        sa.CheckConstraint(f"tier IN {TIERS}", name="tier"),
        sa.Index(
            "ix_tier_states_review_on",
            "review_on",
            postgresql_where=sa.text("review_on IS NOT NULL"),
            sqlite_where=sa.text("review_on IS NOT NULL"),
        ),
    )


class TierChange(Base):
    """Append-only tier history: from/to, why, and the tier points at that moment."""

    __tablename__ = "tier_changes"

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), index=True)
    from_tier: Mapped[str | None] = mapped_column(sa.String(10))
    to_tier: Mapped[str] = mapped_column(sa.String(10))
    reason: Mapped[str] = mapped_column(sa.String(24))  # enrolled, upgrade, review_drop, review_kept, adjustment
    tier_points: Mapped[int] = mapped_column(BigIntType)
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
