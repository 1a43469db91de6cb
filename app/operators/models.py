"""Back-office accounts: who may look members up, adjust points, tune rules, settle."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType

#: agent: call-center; supervisor: approves; dealer_manager: one dealer's members; operator: program HQ.
ROLES = ("agent", "supervisor", "dealer_manager", "operator")


class Operator(Base):
    __tablename__ = "operators"

    id: Mapped[BigIntPK]
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    role: Mapped[str] = mapped_column(sa.String(16))
    #: Dealer member managers see only their dealer's members.
    dealer_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    #: Bumped to revoke every token issued before (logout everywhere, password change).
    token_version: Mapped[int] = mapped_column(default=1)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (sa.CheckConstraint(f"role IN {ROLES}", name="role"),)

    @property
    def actor(self) -> str:
        return f"operator:{self.username}"
