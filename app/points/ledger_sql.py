"""The PostgreSQL fast path of ``earn`` and ``spend``: two statements each, not an ORM flush.

Statement 1 locks the member's account row (``FOR UPDATE``) and reads it. Statement 2 is a
single data-modifying CTE. Running it *after* the lock is what makes it safe: under READ
COMMITTED a statement sees the data committed before it started, and every writer of this
member's lots holds the account lock, so the lots statement 2 reads are current. (Folding the
lock into the CTE would let it read a snapshot older than the lock.)

``app.points.ledger`` chooses this path on PostgreSQL; the ORM path (SQLite, ``make run``) has
the same effects, and the property tests run both against PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from app.core.db import db

_LOCK = sa.text("SELECT reward_available, reward_debt FROM point_accounts WHERE member_id = :member_id FOR UPDATE")

_ENTRY_COLUMNS = (
    "member_id, currency, kind, points, idempotency_key, source_type, source_ref, source_event_id, rule_code, "
    "rule_set_id, basis_fen, funder, dealer_id, reason_code, note, actor, occurred_at, created_at"
)
_ENTRY_VALUES = (
    ":member_id, :currency, :kind, :signed_points, :idempotency_key, :source_type, :source_ref, :source_event_id, "
    ":rule_code, :rule_set_id, :basis_fen, :funder, :dealer_id, :reason_code, :note, :actor, :occurred_at, :now"
)

_EARN = sa.text(f"""
WITH entry AS (
    INSERT INTO point_entries ({_ENTRY_COLUMNS}) VALUES ({_ENTRY_VALUES})
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
), lot AS (
    INSERT INTO point_lots (member_id, entry_id, points, remaining, status, available_at, expires_at,
                            expired_points, funder, dealer_id, created_at)
    SELECT :member_id, entry.id, :points, :points - :debt_paid, :lot_status, :available_at, :expires_at,
           0, :funder, :dealer_id, :now
    FROM entry WHERE :currency = 'reward'
    RETURNING id
), debt_payment AS (
    INSERT INTO point_allocations (entry_id, lot_id, points)
    SELECT entry.id, lot.id, -:debt_paid FROM entry, lot WHERE :debt_paid > 0
), account AS (
    UPDATE point_accounts SET
        reward_available = reward_available + :to_available,
        reward_pending = reward_pending + :to_pending,
        reward_debt = reward_debt - :debt_paid,
        tier_points = tier_points + :to_tier,
        lifetime_earned = lifetime_earned + :to_lifetime,
        last_activity_at = CASE WHEN :currency = 'reward' THEN CAST(:now AS timestamptz) ELSE last_activity_at END,
        updated_at = :now
    WHERE member_id = :member_id AND EXISTS (SELECT 1 FROM entry)
)
SELECT id FROM entry
""")

_SPEND = sa.text(f"""
WITH entry AS (
    INSERT INTO point_entries ({_ENTRY_COLUMNS}) VALUES ({_ENTRY_VALUES})
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
), spendable AS (
    SELECT id, remaining, sum(remaining) OVER (ORDER BY expires_at, id) AS running
    FROM point_lots
    WHERE member_id = :member_id AND status = 'available' AND remaining > 0
), taken AS (
    SELECT id, LEAST(remaining, :points - (running - remaining)) AS points
    FROM spendable
    WHERE running - remaining < :points AND EXISTS (SELECT 1 FROM entry)
), drained AS (
    UPDATE point_lots lot
    SET remaining = lot.remaining - taken.points,
        status = CASE WHEN lot.remaining = taken.points THEN 'depleted' ELSE lot.status END
    FROM taken WHERE lot.id = taken.id
), allocations AS (
    INSERT INTO point_allocations (entry_id, lot_id, points)
    SELECT entry.id, taken.id, -taken.points FROM entry, taken
), account AS (
    UPDATE point_accounts SET
        reward_available = reward_available - :points,
        lifetime_spent = lifetime_spent + :points,
        last_activity_at = :now,
        updated_at = :now
    WHERE member_id = :member_id AND EXISTS (SELECT 1 FROM entry)
)
SELECT entry.id, (SELECT coalesce(sum(points), 0) FROM taken) AS taken FROM entry
""")


def _connection() -> sa.Connection:
    """The session's connection (same transaction); Core execution skips the ORM's overhead."""
    return db.session.connection()


def lock(member_id: int) -> sa.Row | None:
    """Lock and read the account row; None if the member has no account yet."""
    return _connection().execute(_LOCK, {"member_id": member_id}).first()


def _entry_params(fields: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    params = {
        "source_ref": None,
        "source_event_id": None,
        "rule_code": None,
        "rule_set_id": None,
        "basis_fen": None,
        "funder": "oem",
        "dealer_id": None,
        "reason_code": None,
        "note": None,
        "actor": None,
        "occurred_at": now,
        "now": now,
    }
    params.update(fields)
    return params


def insert_earning(
    fields: dict[str, Any],
    *,
    lot_status: str,
    available_at: dt.datetime | None,
    expires_at: dt.datetime | None,
    debt_paid: int,
    now: dt.datetime,
) -> int | None:
    """Statement 2 of an earning; returns the new entry id, or None if the key was taken."""
    points, currency = fields["points"], fields["currency"]
    reward = currency == "reward"
    params = _entry_params(fields, now) | {
        "signed_points": points,
        "lot_status": "depleted" if reward and points == debt_paid else lot_status,
        "available_at": available_at,
        "expires_at": expires_at,
        "debt_paid": debt_paid,
        "to_available": points if reward and lot_status == "available" else 0,
        "to_pending": points if reward and lot_status != "available" else 0,
        "to_tier": 0 if reward else points,
        "to_lifetime": points if reward else 0,
    }
    return _connection().execute(_EARN, params).scalar_one_or_none()


def insert_spending(fields: dict[str, Any], *, now: dt.datetime) -> tuple[int, int] | None:
    """Statement 2 of a spending; (entry id, points taken from lots), or None if the key was taken."""
    params = _entry_params(fields, now) | {"signed_points": -fields["points"], "currency": "reward"}
    row = _connection().execute(_SPEND, params).first()
    return (row.id, int(row.taken)) if row else None
