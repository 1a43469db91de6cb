"""The points ledger: accounts, append-only entries, lots and how entries drew on lots.

Two currencies per member: **reward** points (消费积分, spent; kept in lots with their own expiry)
and **tier** points (定级积分, decide the tier; no lots, never spent).

Invariants, kept by ``app.points.ledger`` (the only writer) and checked by property tests:

* ``reward_available == Σ remaining of available lots − reward_debt``
* ``reward_pending == Σ remaining of pending lots``
* a debt exists only after a reversal took more than was left; earnings pay it off first.
* entries are never updated or deleted (database trigger); corrections are new entries.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType

CURRENCIES = ("reward", "tier")
ENTRY_KINDS = ("earn", "spend", "expire", "reverse", "adjust", "transfer")
FUNDERS = ("oem", "dealer", "partner")
LOT_STATUSES = ("held", "pending", "available", "depleted", "expired", "reversed")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class PointAccount(Base):
    """One row per member; locked (FOR UPDATE) by every ledger write, which serializes them."""

    __tablename__ = "point_accounts"

    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), primary_key=True)
    reward_available: Mapped[int] = mapped_column(BigIntType, default=0)
    reward_pending: Mapped[int] = mapped_column(BigIntType, default=0)
    reward_debt: Mapped[int] = mapped_column(BigIntType, default=0)
    tier_points: Mapped[int] = mapped_column(BigIntType, default=0)
    lifetime_earned: Mapped[int] = mapped_column(BigIntType, default=0)
    lifetime_spent: Mapped[int] = mapped_column(BigIntType, default=0)
    lifetime_expired: Mapped[int] = mapped_column(BigIntType, default=0)
    #: Last earn or spend: the "inactivity" expiry policy counts from here.
    last_activity_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.CheckConstraint("reward_pending >= 0", name="pending_not_negative"),
        sa.CheckConstraint("reward_debt >= 0", name="debt_not_negative"),
        sa.CheckConstraint("reward_available >= 0 OR reward_debt > 0", name="negative_only_as_debt"),
    )


class PointEntry(Base):
    """One movement of points. Append-only; ``idempotency_key`` makes every effect happen once."""

    __tablename__ = "point_entries"

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    currency: Mapped[str] = mapped_column(sa.String(8))
    kind: Mapped[str] = mapped_column(sa.String(8))
    #: Signed: positive adds, negative takes away.
    points: Mapped[int] = mapped_column(BigIntType)
    idempotency_key: Mapped[str] = mapped_column(sa.String(160), unique=True)
    #: What caused it: a DMS event type, "activation", "adjustment", "redemption", "expiry"…
    source_type: Mapped[str] = mapped_column(sa.String(32))
    #: The business reference (order no, repair order no, policy no) that idempotency keys build on.
    source_ref: Mapped[str | None] = mapped_column(sa.String(64))
    source_event_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("inbound_events.id"))
    rule_code: Mapped[str | None] = mapped_column(sa.String(48))
    rule_set_id: Mapped[int | None] = mapped_column(BigIntType)
    #: Amount the points were computed from (fen), for proportional reversals.
    basis_fen: Mapped[int | None] = mapped_column(BigIntType)
    funder: Mapped[str] = mapped_column(sa.String(8), default="oem")
    dealer_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    reverses_entry_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("point_entries.id"))
    reason_code: Mapped[str | None] = mapped_column(sa.String(32))
    note: Mapped[str | None] = mapped_column(sa.String(255))
    actor: Mapped[str | None] = mapped_column(sa.String(64))
    #: When the underlying business event happened (caps and reports use it).
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.CheckConstraint(_in("currency", CURRENCIES), name="currency"),
        sa.CheckConstraint(_in("kind", ENTRY_KINDS), name="kind"),
        sa.CheckConstraint(_in("funder", FUNDERS), name="funder"),
        sa.CheckConstraint("points <> 0", name="points_not_zero"),
        sa.Index("ix_point_entries_member_created", "member_id", "created_at"),
        sa.Index("ix_point_entries_source_ref", "source_ref"),
        sa.Index("ix_point_entries_rule_member", "rule_code", "member_id", "occurred_at"),
        sa.Index("ix_point_entries_reverses", "reverses_entry_id"),
        sa.Index("ix_point_entries_dealer_created", "dealer_id", "created_at"),
    )


class PointLot(Base):
    """Reward points from one earning, with their own expiry. Spending drains soonest-expiring first.

    ``held``: earned before the member activated (credited at activation); ``pending``: in a lock
    period until ``available_at``; ``available``: spendable; then ``depleted``, ``expired`` or
    ``reversed`` once nothing remains.
    """

    __tablename__ = "point_lots"

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"))
    entry_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("point_entries.id"), unique=True)
    points: Mapped[int] = mapped_column(BigIntType)
    remaining: Mapped[int] = mapped_column(BigIntType)
    status: Mapped[str] = mapped_column(sa.String(10))
    available_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime]
    expired_points: Mapped[int] = mapped_column(BigIntType, default=0)
    #: The expire entry that took this lot. Deliberately no foreign key: the nightly batch sets it on
    #: a million rows in the same statement that inserts the entries, and a per-row RI check
    #: would double that batch's cost.
    expired_by_entry_id: Mapped[int | None] = mapped_column(BigIntType)
    funder: Mapped[str] = mapped_column(sa.String(8), default="oem")
    dealer_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.CheckConstraint(_in("status", LOT_STATUSES), name="status"),
        sa.CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining_in_range"),
        # Spending order and the nightly expiry both walk this index.
        sa.Index(
            "ix_point_lots_spendable",
            "member_id",
            "expires_at",
            "id",
            postgresql_where=sa.text("status = 'available'"),
            sqlite_where=sa.text("status = 'available'"),
        ),
        sa.Index(
            "ix_point_lots_expiry_due",
            "expires_at",
            postgresql_where=sa.text("status = 'available'"),
            sqlite_where=sa.text("status = 'available'"),
        ),
        sa.Index(
            "ix_point_lots_release_due",
            "available_at",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
        sa.Index("ix_point_lots_member_status", "member_id", "status"),
    )


class PointAllocation(Base):
    """How many points an entry took from (negative) or gave back to (positive) a lot. Append-only."""

    __tablename__ = "point_allocations"

    id: Mapped[BigIntPK]
    entry_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("point_entries.id"), index=True)
    lot_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("point_lots.id"), index=True)
    points: Mapped[int] = mapped_column(BigIntType)
