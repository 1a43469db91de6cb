"""Benefit catalog (versioned), the entitlement ledger, dealer slots and bookings (SPEC §5).

* A catalog version goes draft → published, like earning rule sets; the published version in force
  decides what members see and book. Bookings keep the benefit row they were made under.
* What a member (or, for car-bound benefits, a car) has left in a membership year is the sum of
  ``entitlement_entries``: grants (+), uses (−), restores (+), revocations on a downgrade (−). The
  rows are append-only; nothing keeps a counter that cannot be explained.
* A slot's ``booked`` moves only by a conditional UPDATE (``booked < capacity``), so a slot is never
  overbooked; a booking is unique per (member, request id), so a resend books once.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType, JSONType

if TYPE_CHECKING:
    from app.dealers.models import Dealer

CATALOG_STATUSES = ("draft", "published", "retired")
BINDINGS = ("member", "car")
DELIVERERS = ("dealer", "partner", "oem")
FUNDERS = ("oem", "dealer", "partner")
ENTRY_KINDS = ("grant", "revoke", "use", "restore", "transfer")
BOOKING_STATUSES = ("booked", "cancelled", "late_cancelled", "no_show", "delivered")
PAYMENTS = ("quota", "points", "free", "share")
SHARE_STATUSES = ("open", "claimed", "returned")
PARTNER_ORDER_STATUSES = ("pending", "issued", "failed", "used", "voiding", "voided")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class BenefitCatalog(Base):
    """One version of the benefit catalog. At most one published version is in force at a time."""

    __tablename__ = "benefit_catalogs"

    id: Mapped[BigIntPK]
    name: Mapped[str] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(10), default="draft")
    based_on_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("benefit_catalogs.id"))
    effective_from: Mapped[dt.datetime | None]
    effective_to: Mapped[dt.datetime | None]
    created_by: Mapped[str] = mapped_column(sa.String(64))
    published_by: Mapped[str | None] = mapped_column(sa.String(64))
    published_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    benefits: Mapped[list[Benefit]] = relationship(
        back_populates="catalog", order_by="Benefit.position", cascade="all, delete-orphan"
    )

    __table_args__ = (sa.CheckConstraint(_in("status", CATALOG_STATUSES), name="status"),)


class Benefit(Base):
    """A catalog entry. ``quotas`` maps a tier to uses per membership year (``null``: unlimited);
    an eligible tier without a quota pays ``points_price`` (none: not for that tier)."""

    __tablename__ = "benefits"

    id: Mapped[BigIntPK]
    catalog_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("benefit_catalogs.id"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    code: Mapped[str] = mapped_column(sa.String(32))
    #: {"zh_CN": "...", "en": "..."}
    name: Mapped[dict[str, Any]] = mapped_column(JSONType)
    description: Mapped[dict[str, Any]] = mapped_column(JSONType)
    eligible_tiers: Mapped[list[Any]] = mapped_column(JSONType)
    quotas: Mapped[dict[str, Any]] = mapped_column(JSONType)
    points_price: Mapped[int | None]
    transferable: Mapped[bool] = mapped_column(default=False)
    binding: Mapped[str] = mapped_column(sa.String(8), default="member")
    needs_slot: Mapped[bool] = mapped_column(default=False)
    #: Matches ``dealer_slots.service_type`` when a slot is needed.
    service_type: Mapped[str | None] = mapped_column(sa.String(32))
    delivered_by: Mapped[str] = mapped_column(sa.String(8), default="dealer")
    cost_fen: Mapped[int] = mapped_column(BigIntType, default=0)
    funder: Mapped[str] = mapped_column(sa.String(8), default="oem")
    active_from: Mapped[dt.datetime | None]
    active_to: Mapped[dt.datetime | None]
    #: A pilot is open to ``pilot_size`` members drawn reproducibly with ``pilot_seed``.
    pilot_size: Mapped[int | None]
    pilot_seed: Mapped[str | None] = mapped_column(sa.String(32))
    creates_lead: Mapped[bool] = mapped_column(default=False)
    #: Usable only on the member's birthday (Asia/Shanghai), e.g. the birthday-day labour discount.
    birthday_only: Mapped[bool] = mapped_column(default=False)

    catalog: Mapped[BenefitCatalog] = relationship(back_populates="benefits")

    __table_args__ = (
        sa.UniqueConstraint("catalog_id", "code"),
        sa.CheckConstraint(_in("binding", BINDINGS), name="binding"),
        sa.CheckConstraint(_in("delivered_by", DELIVERERS), name="delivered_by"),
        sa.CheckConstraint(_in("funder", FUNDERS), name="funder"),
        sa.CheckConstraint("cost_fen >= 0", name="cost_not_negative"),
        sa.CheckConstraint("points_price IS NULL OR points_price > 0", name="points_price_positive"),
        sa.CheckConstraint("NOT needs_slot OR service_type IS NOT NULL", name="slot_needs_service_type"),
    )


class PilotMember(Base):
    """A member drawn into a benefit's pilot cohort (by code and seed: a new catalog version with
    the same seed keeps the cohort)."""

    __tablename__ = "benefit_pilot_members"

    benefit_code: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    seed: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), primary_key=True)
    drawn_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class EntitlementEntry(Base):
    """One movement of a quota. Member-bound benefits count per member, car-bound ones per car
    (``vehicle_id`` set; the next owner inherits what is left). Append-only (trigger)."""

    __tablename__ = "entitlement_entries"

    id: Mapped[BigIntPK]
    benefit_code: Mapped[str] = mapped_column(sa.String(32))
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    vehicle_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("vehicles.id"))
    #: First day (Asia/Shanghai) of the membership year the entry counts in.
    year_start: Mapped[dt.date]
    kind: Mapped[str] = mapped_column(sa.String(8))
    quantity: Mapped[int]
    tier: Mapped[str | None] = mapped_column(sa.String(16))
    booking_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("bookings.id"))
    #: The race guard: one use and one restore per booking, one grant step per holder and year.
    idempotency_key: Mapped[str] = mapped_column(sa.String(128), unique=True)
    note: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.CheckConstraint(_in("kind", ENTRY_KINDS), name="kind"),
        sa.CheckConstraint(
            "(kind IN ('grant', 'restore') AND quantity > 0)"
            " OR (kind IN ('use', 'revoke', 'transfer') AND quantity < 0)",
            name="sign_by_kind",
        ),
        sa.Index("ix_entitlement_entries_member", "member_id", "benefit_code", "year_start"),
        sa.Index(
            "ix_entitlement_entries_vehicle",
            "vehicle_id",
            "benefit_code",
            "year_start",
            postgresql_where=sa.text("vehicle_id IS NOT NULL"),
            sqlite_where=sa.text("vehicle_id IS NOT NULL"),
        ),
    )


class DealerSlot(Base):
    """Capacity a dealer publishes: a service type, a time window, how many members it takes."""

    __tablename__ = "dealer_slots"

    id: Mapped[BigIntPK]
    dealer_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    service_type: Mapped[str] = mapped_column(sa.String(32))
    day: Mapped[dt.date]  # Asia/Shanghai date of ``starts_at``
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime]
    capacity: Mapped[int]
    booked: Mapped[int] = mapped_column(default=0)
    created_by: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    #: Read with the slot when booking (one statement for both; the answer names the dealer).
    dealer: Mapped[Dealer] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("dealer_id", "service_type", "starts_at"),
        sa.CheckConstraint("ends_at > starts_at", name="window"),
        sa.CheckConstraint("capacity >= 0", name="capacity_not_negative"),
        # The last line of defence; the conditional UPDATE is what keeps racing bookings out.
        sa.CheckConstraint("booked >= 0 AND booked <= capacity", name="within_capacity"),
        sa.Index("ix_dealer_slots_dealer_day", "dealer_id", "day"),
    )


class Booking(Base):
    """A member's use of a benefit: booked (quota or points taken), then delivered at check-in,
    cancelled (in time: restored), cancelled late, or a no-show."""

    __tablename__ = "bookings"

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    request_id: Mapped[str] = mapped_column(sa.String(64))
    benefit_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("benefits.id"))
    benefit_code: Mapped[str] = mapped_column(sa.String(32))
    slot_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("dealer_slots.id"))
    dealer_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    vehicle_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("vehicles.id"))
    status: Mapped[str] = mapped_column(sa.String(16), default="booked")
    paid_with: Mapped[str] = mapped_column(sa.String(8))
    points_spent: Mapped[int] = mapped_column(default=0)
    year_start: Mapped[dt.date]
    #: Settlement facts, copied from the catalog entry when booked.
    cost_fen: Mapped[int] = mapped_column(BigIntType, default=0)
    funder: Mapped[str] = mapped_column(sa.String(8), default="oem")
    rescheduled_from_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("bookings.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[dt.datetime | None]
    delivered_at: Mapped[dt.datetime | None]
    delivered_by_staff_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("staff.id"))
    no_show_at: Mapped[dt.datetime | None]
    #: The member's rating after delivery, 1–5 (once).
    rating: Mapped[int | None]
    rating_comment: Mapped[str | None] = mapped_column(sa.String(255))
    rated_at: Mapped[dt.datetime | None]

    slot: Mapped[DealerSlot | None] = relationship()
    benefit: Mapped[Benefit] = relationship()

    __table_args__ = (
        # A resend of the same request returns the first booking; concurrent resends collide here.
        sa.UniqueConstraint("member_id", "request_id"),
        sa.CheckConstraint(_in("status", BOOKING_STATUSES), name="status"),
        sa.CheckConstraint(_in("paid_with", PAYMENTS), name="paid_with"),
        sa.CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="rating_range"),
        sa.Index("ix_bookings_member_created", "member_id", "created_at"),
        sa.Index(
            "ix_bookings_open",
            "slot_id",
            postgresql_where=sa.text("status = 'booked'"),
            sqlite_where=sa.text("status = 'booked'"),
        ),
    )


class BenefitShare(Base):
    """A transferable benefit a member gives away: one use of their quota is held (a ``transfer``
    entitlement entry) until a friend claims it, exactly once, or it returns after 7 days."""

    __tablename__ = "benefit_shares"

    id: Mapped[BigIntPK]
    #: Opaque, unguessable; the share link and the mini-app code scene carry it (≤ 32 characters).
    key: Mapped[str] = mapped_column(sa.String(32), unique=True)
    from_member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    #: The giver's tap: a resend returns the same share.
    request_id: Mapped[str] = mapped_column(sa.String(64))
    benefit_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("benefits.id"))
    benefit_code: Mapped[str] = mapped_column(sa.String(32))
    #: The giver's membership year the held use counts in (restored there if unclaimed).
    year_start: Mapped[dt.date]
    #: The dealer that gets the lead and delivers the benefit.
    dealer_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    model_interest: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(10), default="open")
    claimed_by_member_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    claimed_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime]
    returned_at: Mapped[dt.datetime | None]
    #: The friend's booking made with this share (at most one).
    booking_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("bookings.id"), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: The share's mini-app code (getwxacodeunlimit), asked of WeChat once.
    wxacode_png: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    wxacode_at: Mapped[dt.datetime | None]

    benefit: Mapped[Benefit] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("from_member_id", "request_id"),
        sa.CheckConstraint(_in("status", SHARE_STATUSES), name="status"),
        sa.CheckConstraint("claimed_by_member_id IS NULL OR claimed_by_member_id <> from_member_id", name="not_self"),
        sa.Index("ix_benefit_shares_claimed_by", "claimed_by_member_id"),
        sa.Index(
            "ix_benefit_shares_open_expiry",
            "expires_at",
            postgresql_where=sa.text("status = 'open'"),
            sqlite_where=sa.text("status = 'open'"),
        ),
    )


class PartnerOrder(Base):
    """A benefit a partner delivers (roadside assistance, an airport lounge): the booking took the
    quota or points; this row asks the partner for a service code after the commit (``pending`` →
    ``issued``, retried by a job; ``failed`` when the partner refuses), records the partner's usage
    report (``used``: the booking is delivered, as at a dealer check-in) and, when the member
    cancels before use, the void at the partner (``voiding`` → ``voided``)."""

    __tablename__ = "benefit_partner_orders"

    id: Mapped[BigIntPK]
    booking_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("bookings.id"), unique=True)
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), index=True)
    #: What the partner is asked for (the benefit's service type, else its code).
    service: Mapped[str] = mapped_column(sa.String(32))
    #: Our order number at the partner (its idempotency key: a retried issue returns the same code).
    out_order_no: Mapped[str] = mapped_column(sa.String(32), unique=True)
    status: Mapped[str] = mapped_column(sa.String(8), default="pending")
    partner_order_no: Mapped[str | None] = mapped_column(sa.String(64))
    service_code: Mapped[str | None] = mapped_column(sa.String(64))
    code_expires_at: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.String(255))
    issued_at: Mapped[dt.datetime | None]
    used_at: Mapped[dt.datetime | None]
    #: Where the partner delivered it (a rescue station, a lounge), as it reported.
    used_where: Mapped[str | None] = mapped_column(sa.String(128))
    voided_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    booking: Mapped[Booking] = relationship()

    __table_args__ = (
        sa.CheckConstraint(_in("status", PARTNER_ORDER_STATUSES), name="status"),
        sa.Index(
            "ix_benefit_partner_orders_open",
            "status",
            postgresql_where=sa.text("status IN ('pending', 'voiding')"),
            sqlite_where=sa.text("status IN ('pending', 'voiding')"),
        ),
    )
