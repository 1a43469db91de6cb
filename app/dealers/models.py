"""Dealer and staff records (master data synced from the OEM's dealer system)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType

STAFF_ROLES = ("sales_advisor", "service_advisor", "member_manager")


class Dealer(Base):
    __tablename__ = "dealers"

    id: Mapped[BigIntPK]
    code: Mapped[str] = mapped_column(sa.String(16), unique=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    region: Mapped[str] = mapped_column(sa.String(32))
    city: Mapped[str] = mapped_column(sa.String(64))
    address: Mapped[str | None] = mapped_column(sa.String(255))
    phone: Mapped[str | None] = mapped_column(sa.String(32))  # the showroom's public number
    latitude: Mapped[float | None] = mapped_column(sa.Float)
    longitude: Mapped[float | None] = mapped_column(sa.Float)
    active: Mapped[bool] = mapped_column(default=True)
    opened_on: Mapped[dt.date | None]
    closed_on: Mapped[dt.date | None]
    #: When HQ last changed this record (master file or CRM event): an older change is ignored.
    master_changed_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    staff: Mapped[list[Staff]] = relationship(back_populates="dealer")


class Staff(Base):
    __tablename__ = "staff"

    id: Mapped[BigIntPK]
    dealer_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"), index=True)
    #: The advisor code the DMS sends with deliveries and repair orders.
    staff_code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    role: Mapped[str] = mapped_column(sa.String(24))
    monthly_enrollment_target: Mapped[int] = mapped_column(default=0)
    #: The mini-app sign-in this staff member uses in staff mode (bound with a one-time invite).
    miniapp_identity_id: Mapped[int | None] = mapped_column(
        BigIntType,
        sa.ForeignKey("wechat_identities.id", use_alter=True),
        unique=True,  # members → staff → here
    )
    #: False once the advisor left: their QR codes stop enrolling; members keep their attribution.
    active: Mapped[bool] = mapped_column(default=True)
    joined_on: Mapped[dt.date | None]
    left_on: Mapped[dt.date | None]
    #: When HQ last changed this record (master file or CRM event): an older change is ignored.
    master_changed_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    dealer: Mapped[Dealer] = relationship(back_populates="staff")

    __table_args__ = (sa.CheckConstraint(f"role IN {STAFF_ROLES}", name="role"),)


class EnrollmentTarget(Base):
    """A monthly enrollment target set by HQ: per dealer (``staff_id`` None) or per advisor."""

    __tablename__ = "enrollment_targets"

    id: Mapped[BigIntPK]
    #: The first day of the month.
    month: Mapped[dt.date]
    dealer_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    staff_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("staff.id"))
    target: Mapped[int]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.CheckConstraint("target >= 0", name="target_not_negative"),
        sa.Index(
            "uq_enrollment_targets_dealer",
            "month",
            "dealer_id",
            unique=True,
            postgresql_where=sa.text("staff_id IS NULL"),
            sqlite_where=sa.text("staff_id IS NULL"),
        ),
        sa.Index(
            "uq_enrollment_targets_staff",
            "month",
            "staff_id",
            unique=True,
            postgresql_where=sa.text("staff_id IS NOT NULL"),
            sqlite_where=sa.text("staff_id IS NOT NULL"),
        ),
    )
