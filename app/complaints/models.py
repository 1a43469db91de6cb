"""A complaint logged by customer service: category, status, resolution."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType

COMPLAINT_STATUSES = ("open", "in_progress", "resolved", "closed")


class Complaint(Base):
    """One complaint. Its history of changes is the audit log (``complaint.*`` actions)."""

    __tablename__ = "complaints"

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), index=True)
    #: A code from the program setting ``complaints.categories``.
    category: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(12), default="open")
    description: Mapped[str] = mapped_column(sa.String(2000))
    resolution: Mapped[str | None] = mapped_column(sa.String(2000))
    created_by: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    resolved_at: Mapped[dt.datetime | None]

    __table_args__ = (
        sa.CheckConstraint(f"status IN {COMPLAINT_STATUSES}", name="status"),
        sa.Index("ix_complaints_created_at_category", "created_at", "category"),
    )
