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
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType

CURRENCIES = ("reward", "tier")
ENTRY_KINDS = ("earn", "spend", "expire", "reverse", "adjust", "transfer", "refund")
FUNDERS = ("oem", "dealer", "partner")
LOT_STATUSES = ("held", "pending", "available", "depleted", "expired", "reversed")
ADJUSTMENT_STATUSES = ("pending", "applied", "rejected")
SETTLEMENT_STATUSES = ("draft", "reviewed", "approved", "paid")
RULE_SET_STATUSES = ("draft", "simulated", "published", "retired")


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


class AdjustmentRequest(Base):
    """A customer-service adjustment; above the threshold it waits for a second person."""

    __tablename__ = "point_adjustments"

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("members.id"), index=True)
    points: Mapped[int] = mapped_column(BigIntType)
    reason_code: Mapped[str] = mapped_column(sa.String(32))
    note: Mapped[str] = mapped_column(sa.String(255))
    status: Mapped[str] = mapped_column(sa.String(10))
    #: The client's request id: a double submit returns the first request.
    request_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    requested_by: Mapped[str] = mapped_column(sa.String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(sa.String(64))
    decided_at: Mapped[dt.datetime | None]
    entry_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("point_entries.id"))

    __table_args__ = (
        sa.CheckConstraint(f"status IN {ADJUSTMENT_STATUSES}", name="status"),
        sa.CheckConstraint("points <> 0", name="points_not_zero"),
        sa.Index("ix_point_adjustments_status", "status", "requested_at"),
    )


class PointUndo(Base):
    """A cancellation or refund, kept so an earning processed *after* it is undone too.

    DMS events are drained in parallel and retried with backoff, so ``order.cancelled`` can be
    applied before the ``vehicle.delivered`` it cancels. Each undo is recorded here; the earning
    handler re-applies the undos of its reference right after crediting (same idempotency keys, so
    nothing is reversed twice). Both sides hold a per-reference transaction lock while they work.
    """

    __tablename__ = "point_undos"

    id: Mapped[BigIntPK]
    event_type: Mapped[str] = mapped_column(sa.String(40))
    ref: Mapped[str] = mapped_column(sa.String(64))
    undo_ref: Mapped[str] = mapped_column(sa.String(96), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(12))  # full, proportional
    refunded: Mapped[dict[str, Any] | None]
    source_type: Mapped[str] = mapped_column(sa.String(40))
    source_event_id: Mapped[int | None] = mapped_column(BigIntType)
    #: The business date of a cancellation (ends the ownership a late delivery creates).
    undone_on: Mapped[dt.date | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (sa.Index("ix_point_undos_event_ref", "event_type", "ref"),)


class DealerSettlement(Base):
    """A dealer's monthly points statement: draft → reviewed → approved → paid."""

    __tablename__ = "dealer_settlements"

    id: Mapped[BigIntPK]
    dealer_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    month: Mapped[dt.date]  # first day of the business month
    status: Mapped[str] = mapped_column(sa.String(10), default="draft")
    funded_points: Mapped[int] = mapped_column(BigIntType, default=0)
    redeemed_points: Mapped[int] = mapped_column(BigIntType, default=0)
    point_value_fen: Mapped[int]
    net_fen: Mapped[int] = mapped_column(BigIntType, default=0)
    #: Benefits the dealer delivered that the OEM funds (Σ of its OEM-funded cost lines), in ``net_fen``.
    benefit_fen: Mapped[int] = mapped_column(BigIntType, default=0, server_default="0")
    computed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    reviewed_by: Mapped[str | None] = mapped_column(sa.String(64))
    reviewed_at: Mapped[dt.datetime | None]
    approved_by: Mapped[str | None] = mapped_column(sa.String(64))
    approved_at: Mapped[dt.datetime | None]
    paid_by: Mapped[str | None] = mapped_column(sa.String(64))
    paid_at: Mapped[dt.datetime | None]
    payment_ref: Mapped[str | None] = mapped_column(sa.String(64))

    __table_args__ = (
        sa.UniqueConstraint("dealer_id", "month"),
        sa.CheckConstraint(f"status IN {SETTLEMENT_STATUSES}", name="status"),
    )


class SettlementLine(Base):
    """A cost line of a dealer's month beside the points: e.g. benefits it delivered (how many, the
    cost, who funds it). Written by other packages through ``settlement.replace_lines`` while the
    month's statement is a draft; ``funder = 'oem'`` lines are owed to the dealer (``benefit_fen``)."""

    __tablename__ = "dealer_settlement_lines"

    id: Mapped[BigIntPK]
    dealer_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("dealers.id"))
    month: Mapped[dt.date]
    kind: Mapped[str] = mapped_column(sa.String(16))
    code: Mapped[str] = mapped_column(sa.String(32))
    funder: Mapped[str] = mapped_column(sa.String(8))
    quantity: Mapped[int]
    amount_fen: Mapped[int] = mapped_column(BigIntType)

    __table_args__ = (
        sa.UniqueConstraint("dealer_id", "month", "kind", "code", "funder"),
        sa.CheckConstraint(_in("funder", FUNDERS), name="funder"),
        sa.Index("ix_dealer_settlement_lines_month", "month", "kind"),
    )


class RuleSet(Base):
    """Earning rules as data, moving draft → simulated → published, each set with effective dates."""

    __tablename__ = "rule_sets"

    id: Mapped[BigIntPK]
    name: Mapped[str] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(10), default="draft")
    effective_from: Mapped[dt.datetime | None]
    effective_to: Mapped[dt.datetime | None]
    based_on_id: Mapped[int | None] = mapped_column(BigIntType, sa.ForeignKey("rule_sets.id"))
    simulation: Mapped[dict[str, Any] | None]
    simulated_at: Mapped[dt.datetime | None]
    created_by: Mapped[str] = mapped_column(sa.String(64))
    published_by: Mapped[str | None] = mapped_column(sa.String(64))
    published_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    rules: Mapped[list[EarningRule]] = relationship(
        back_populates="rule_set",
        order_by="EarningRule.priority, EarningRule.id",
        cascade="all, delete-orphan",
    )

    __table_args__ = (
        sa.CheckConstraint(f"status IN {RULE_SET_STATUSES}", name="status"),
        sa.Index("ix_rule_sets_status_from", "status", "effective_from"),
    )


class EarningRule(Base):
    """event type + conditions + formula + caps + priority + stop-here (SPEC §3)."""

    __tablename__ = "earning_rules"

    id: Mapped[BigIntPK]
    rule_set_id: Mapped[int] = mapped_column(BigIntType, sa.ForeignKey("rule_sets.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(sa.String(48))
    name: Mapped[str] = mapped_column(sa.String(128))
    event_type: Mapped[str] = mapped_column(sa.String(48))
    currency: Mapped[str] = mapped_column(sa.String(8))
    priority: Mapped[int] = mapped_column(default=100)
    stop_here: Mapped[bool] = mapped_column(default=False)
    conditions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    formula: Mapped[dict[str, Any]]
    caps: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: Tier acceleration (Gold +10% …) and birthday-month multipliers apply when set.
    multipliers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    funder: Mapped[str] = mapped_column(sa.String(8), default="oem")
    #: Days the points stay pending before they can be spent (refund lock, referral cooling).
    pending_days: Mapped[int] = mapped_column(default=0)
    #: A campaign's points reserve: the rule never issues more than this in total.
    budget_points: Mapped[int | None] = mapped_column(BigIntType)

    rule_set: Mapped[RuleSet] = relationship(back_populates="rules")

    __table_args__ = (sa.UniqueConstraint("rule_set_id", "code"),)


class RuleBudget(Base):
    """Points issued against a campaign rule's reserve; its row lock makes the cap race-free."""

    __tablename__ = "rule_budgets"

    rule_code: Mapped[str] = mapped_column(sa.String(48), primary_key=True)
    issued_points: Mapped[int] = mapped_column(BigIntType, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
