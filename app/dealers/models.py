"""Dealer and staff records (master data synced from the OEM's dealer system), and the sales leads
the program hands to a dealer."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType

STAFF_ROLES = ("sales_advisor", "service_advisor", "member_manager")
LEAD_SOURCES = ("benefit_transfer", "referral")
LEAD_STATUSES = ("new", "contacted", "converted", "lost")


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


class SalesLead(Base):
    """A prospect handed to a dealer's sales team: who (a member, or only a phone's blind index), the
    model they are interested in, where the lead came from and who referred them. Benefit transfers
    write them now; referrals add ``source = 'referral'``."""

    __tablename__ = "sales_leads"

    id: Mapped[BigIntPK]
    dealer_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    member_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    #: HMAC blind index of the prospect's phone when there is no member (never the phone itself).
    phone_index: Mapped[str | None] = mapped_column(sa.String(64))
    model_interest: Mapped[str | None] = mapped_column(sa.String(64))
    source: Mapped[str] = mapped_column(sa.String(24))
    #: The business reference of the source (a benefit share id, a referral id): one lead per source row.
    source_ref: Mapped[str] = mapped_column(sa.String(64))
    referrer_member_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    status: Mapped[str] = mapped_column(sa.String(12), default="new")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("source", "source_ref"),
        sa.CheckConstraint(f"source IN {LEAD_SOURCES}", name="source"),
        sa.CheckConstraint(f"status IN {LEAD_STATUSES}", name="status"),
        sa.CheckConstraint("member_id IS NOT NULL OR phone_index IS NOT NULL", name="who"),
        sa.Index("ix_sales_leads_dealer_created", "dealer_id", "created_at"),
    )


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
