"""Read model for the channels: balance, paged history with lots, tier progress.

Chat ("积分"), the mini-app and the console all read through these functions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.db import db
from app.points.models import PointAccount, PointEntry, PointLot
from app.tiers import policy as tiers


@dataclass(frozen=True)
class Balance:
    available: int
    pending: int
    debt: int
    tier_points: int
    expiring_30_days: int
    expiring_90_days: int
    next_expiry_on: dt.datetime | None
    next_expiry_points: int
    lifetime_earned: int
    lifetime_spent: int
    lifetime_expired: int


_ACCOUNT_COLUMNS = (
    "reward_available",
    "reward_pending",
    "reward_debt",
    "tier_points",
    "lifetime_earned",
    "lifetime_spent",
    "lifetime_expired",
    "updated_at",
)
_NO_ACCOUNT = dict.fromkeys(_ACCOUNT_COLUMNS, 0) | {"updated_at": None}


def _balance_statement(*, many: bool = False) -> sa.Select:
    """The account row joined to the member's spendable lots grouped by expiry date (a member holds
    a few dozen distinct expiry dates at most, so the windows are summed in Python). ``many``: for
    the members in the expanding ``member_ids`` parameter, each row with its member id."""
    same_member = (
        PointLot.member_id.in_(sa.bindparam("member_ids", expanding=True))
        if many
        else PointLot.member_id == sa.bindparam("member_id")
    )
    lots = (
        sa.select(PointLot.member_id, PointLot.expires_at, sa.func.sum(PointLot.remaining).label("points"))
        .where(same_member, PointLot.status == "available", PointLot.remaining > 0)
        .group_by(PointLot.member_id, PointLot.expires_at)
        .subquery()
    )
    accounts = (
        PointAccount.member_id.in_(sa.bindparam("member_ids", expanding=True))
        if many
        else PointAccount.member_id == sa.bindparam("member_id")
    )
    return (
        sa.select(
            *(getattr(PointAccount, name) for name in _ACCOUNT_COLUMNS),
            lots.c.expires_at,
            lots.c.points,
            PointAccount.member_id,
        )
        .outerjoin(lots, lots.c.member_id == PointAccount.member_id)
        .where(accounts)
        .order_by(PointAccount.member_id, lots.c.expires_at)
    )


#: The account's columns a balance reads, for a statement that joins ``PointAccount`` itself.
ACCOUNT_COLUMNS = tuple(getattr(PointAccount, name) for name in _ACCOUNT_COLUMNS)


def spendable_lots_by_expiry(member_id: sa.ColumnElement[int]) -> sa.Subquery:
    """The spendable points of the member ``member_id`` (any SQL expression: a scalar subquery)
    by expiry date, columns ``expires_at`` and ``points``; ``_balance_of`` reads them."""
    return (
        sa.select(PointLot.expires_at, sa.func.sum(PointLot.remaining).label("points"))
        .where(PointLot.member_id == member_id, PointLot.status == "available", PointLot.remaining > 0)
        .group_by(PointLot.expires_at)
        .subquery()
    )


def balance_and_version_of(
    member_id: int, rows: Sequence[sa.Row], *, now: dt.datetime | None = None
) -> tuple[Balance, str]:
    """``balance_and_version`` from rows read by another statement: each with the account's
    ``ACCOUNT_COLUMNS`` and one expiry date's ``expires_at`` and ``points`` (NULL: none), ordered
    by expiry date; no rows: no account."""
    balance, updated_at = _balance_of([row._mapping for row in rows], now)
    return balance, _version(member_id, updated_at)


def _version(member_id: int, updated_at: dt.datetime | None) -> str:
    return f"{member_id}:{updated_at.isoformat() if updated_at else 0}"


#: Built once: the balance is the hottest read of the program (every mini-app home screen).
_BALANCE = _balance_statement()
_BALANCES = _balance_statement(many=True)


def balance(member_id: int, *, now: dt.datetime | None = None) -> Balance:
    return balance_and_version(member_id, now=now)[0]


def balances(member_ids: Collection[int], *, now: dt.datetime | None = None) -> dict[int, Balance]:
    """``balance`` of many members in one query (a batch of reminders)."""
    now = now or utcnow()
    rows: dict[int, list] = {member_id: [] for member_id in member_ids}
    for row in db.session.execute(_BALANCES, {"member_ids": sorted(rows)}).mappings():
        rows[row["member_id"]].append(row)
    return {member_id: _balance_of(found, now)[0] for member_id, found in rows.items()}


def balance_and_version(member_id: int, *, now: dt.datetime | None = None) -> tuple[Balance, str]:
    """The balance, and a version that changes whenever the account moves (for ETags). One query."""
    balance, updated_at = _balance_of(db.session.execute(_BALANCE, {"member_id": member_id}).mappings().all(), now)
    return balance, _version(member_id, updated_at)


def _balance_of(rows: Sequence[Any], now: dt.datetime | None) -> tuple[Balance, dt.datetime | None]:
    now = now or utcnow()
    account = rows[0] if rows else _NO_ACCOUNT
    by_expiry = [(row["expires_at"], int(row["points"])) for row in rows if row["expires_at"] is not None]
    in_30, in_90 = now + dt.timedelta(days=30), now + dt.timedelta(days=90)
    balance = Balance(
        available=account["reward_available"],
        pending=account["reward_pending"],
        debt=account["reward_debt"],
        tier_points=account["tier_points"],
        expiring_30_days=sum(points for expires_at, points in by_expiry if now <= expires_at < in_30),
        expiring_90_days=sum(points for expires_at, points in by_expiry if now <= expires_at < in_90),
        next_expiry_on=by_expiry[0][0] if by_expiry else None,
        next_expiry_points=by_expiry[0][1] if by_expiry else 0,
        lifetime_earned=account["lifetime_earned"],
        lifetime_spent=account["lifetime_spent"],
        lifetime_expired=account["lifetime_expired"],
    )
    return balance, account["updated_at"]


def history(
    member_id: int, *, page: int = 1, per_page: int = 20, currency: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Entries newest first, each earn with its lot (remaining, status, expiry)."""
    query = (
        sa.select(PointEntry, PointLot)
        .outerjoin(PointLot, PointLot.entry_id == PointEntry.id)
        .where(PointEntry.member_id == member_id)
    )
    if currency:
        query = query.where(PointEntry.currency == currency)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = db.session.execute(
        query.order_by(PointEntry.created_at.desc(), PointEntry.id.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    items = []
    for entry, lot in rows:
        items.append(
            {
                "id": entry.id,
                "currency": entry.currency,
                "kind": entry.kind,
                "points": entry.points,
                "source_type": entry.source_type,
                "source_ref": entry.source_ref,
                "rule_code": entry.rule_code,
                "reason_code": entry.reason_code,
                "occurred_at": entry.occurred_at,
                "created_at": entry.created_at,
                "reverses_entry_id": entry.reverses_entry_id,
                "lot": None
                if lot is None
                else {
                    "status": lot.status,
                    "remaining": lot.remaining,
                    "available_at": lot.available_at,
                    "expires_at": lot.expires_at,
                },
            }
        )
    return items, int(total or 0)


@dataclass(frozen=True)
class TierProgress:
    tier: str
    tier_points: int
    next_tier: str | None
    points_to_next: int | None
    review_on: dt.date | None
    at_risk: bool
    keeps_tier_by: list[str]


def tier_progress(member_id: int) -> TierProgress:
    state = tiers.get_state(member_id)
    account = db.session.get(PointAccount, member_id)
    points = account.tier_points if account else 0
    upcoming = tiers.next_tier(state.tier)
    thresholds = tiers.THRESHOLDS.value()
    return TierProgress(
        tier=state.tier,
        tier_points=points,
        next_tier=upcoming,
        points_to_next=max(0, thresholds[upcoming] - points) if upcoming else None,
        review_on=state.review_on,
        at_risk=tiers.would_drop(state),
        keeps_tier_by=list(tiers.QUALIFYING_ACTIVITIES) if state.review_on else [],
    )
