"""Earning rules as data: rule sets move draft → simulated → published, each with effective dates.

A rule set is the whole configuration in force for a period; editing means copying the published
set into a new draft, changing it, simulating it against real stored events, then publishing it
(which retires the previous set from its ``effective_from``). Rules inside are plain rows whose
conditions, formula and caps are JSON validated by ``app.points.rules``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.clock import utcnow
from app.core.db import Base, BigIntPK, BigIntType

RULE_SET_STATUSES = ("draft", "simulated", "published", "retired")


class RuleSet(Base):
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
