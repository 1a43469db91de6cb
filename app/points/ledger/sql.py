"""The PostgreSQL fast path of ``earn`` and ``spend``: one or two statements, no ORM flush.

* **earn** is ONE statement. Its first CTE locks the member's account row (``FOR UPDATE``); under
  READ COMMITTED a locked row is re-read at its latest committed version, and the earning reads
  no other table, so the debt it pays off is current.
* **spend** is TWO statements. The first locks the account row; the second, which starts after
  the lock is held, drains lots soonest-expiring first. It must be separate: a statement sees the
  data committed before *it* started, every writer of a member's lots holds the account lock, so
  only a statement started after the lock reads current lots.

Statements go straight to the psycopg connection inside the session's transaction: this is the
hottest path of the system and SQLAlchemy's per-execute overhead was most of its CPU.
``app.points.ledger.posting`` picks this path on PostgreSQL; the ORM path (SQLite, ``make run``) has the
same effects, and the property tests run both against PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from app.core.db import driver_execute

_LOCK = "SELECT reward_available FROM point_accounts WHERE member_id = %(member_id)s FOR UPDATE"

_ENTRY_COLUMNS = (
    "member_id, currency, kind, points, idempotency_key, source_type, source_ref, source_event_id, rule_code, "
    "rule_set_id, basis_fen, funder, dealer_id, reason_code, note, actor, occurred_at, created_at"
)
_ENTRY_VALUES = ", ".join(
    f"%({name})s"
    for name in (
        "member_id",
        "currency",
        "kind",
        "signed_points",
        "idempotency_key",
        "source_type",
        "source_ref",
        "source_event_id",
        "rule_code",
        "rule_set_id",
        "basis_fen",
        "funder",
        "dealer_id",
        "reason_code",
        "note",
        "actor",
        "occurred_at",
        "now",
    )
)

_EARN = f"""
WITH account AS (
    SELECT member_id, reward_debt FROM point_accounts WHERE member_id = %(member_id)s FOR UPDATE
), entry AS (
    INSERT INTO point_entries ({_ENTRY_COLUMNS})
    SELECT {_ENTRY_VALUES} FROM account
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
), plan AS (
    SELECT entry.id AS entry_id,
           CASE WHEN %(pays_debt)s THEN LEAST(account.reward_debt, %(points)s) ELSE 0 END AS paid
    FROM entry, account
), lot AS (
    INSERT INTO point_lots (member_id, entry_id, points, remaining, status, available_at, expires_at,
                            expired_points, funder, dealer_id, created_at)
    SELECT %(member_id)s, plan.entry_id, %(points)s, %(points)s - plan.paid,
           CASE WHEN plan.paid = %(points)s THEN 'depleted' ELSE %(lot_status)s END,
           %(available_at)s, %(expires_at)s, 0, %(funder)s, %(dealer_id)s, %(now)s
    FROM plan WHERE %(currency)s = 'reward'
    RETURNING id, entry_id
), debt_payment AS (
    INSERT INTO point_allocations (entry_id, lot_id, points)
    SELECT lot.entry_id, lot.id, -plan.paid FROM lot, plan WHERE plan.paid > 0
), updated AS (
    UPDATE point_accounts SET
        reward_available = reward_available + %(to_available)s,
        reward_pending = reward_pending + %(to_pending)s,
        reward_debt = reward_debt - (SELECT paid FROM plan),
        tier_points = tier_points + %(to_tier)s,
        lifetime_earned = lifetime_earned + %(to_lifetime)s,
        last_activity_at = CASE WHEN %(currency)s = 'reward' THEN %(now)s ELSE last_activity_at END,
        updated_at = %(now)s
    WHERE member_id = %(member_id)s AND EXISTS (SELECT 1 FROM plan)
)
SELECT (SELECT count(*) FROM account) AS accounts, (SELECT id FROM entry) AS entry_id
"""

_SPEND = f"""
WITH entry AS (
    INSERT INTO point_entries ({_ENTRY_COLUMNS})
    SELECT {_ENTRY_VALUES} FROM point_accounts
    WHERE member_id = %(member_id)s AND reward_available >= %(points)s
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
), spendable AS (
    SELECT id, remaining, sum(remaining) OVER (ORDER BY expires_at, id) AS running
    FROM point_lots
    WHERE member_id = %(member_id)s AND status = 'available' AND remaining > 0
), taken AS (
    SELECT id, LEAST(remaining, %(points)s - (running - remaining)) AS points
    FROM spendable
    WHERE running - remaining < %(points)s AND EXISTS (SELECT 1 FROM entry)
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
        reward_available = reward_available - %(points)s,
        lifetime_spent = lifetime_spent + %(points)s,
        last_activity_at = %(now)s,
        updated_at = %(now)s
    WHERE member_id = %(member_id)s AND EXISTS (SELECT 1 FROM entry)
)
SELECT entry.id, (SELECT coalesce(sum(points), 0) FROM taken) AS taken FROM entry
"""

_ENTRY_DEFAULTS = {
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
}


def _execute(sql: str, params: dict[str, Any]) -> tuple | None:
    """Run on the session's own connection and transaction, returning the first row."""
    return driver_execute(sql, params).fetchone()


def lock(member_id: int) -> int | None:
    """Lock the account row; its spendable balance, or None if the member has no account yet."""
    row = _execute(_LOCK, {"member_id": member_id})
    return None if row is None else row[0]


def insert_earning(
    fields: dict[str, Any],
    *,
    lot_status: str,
    available_at: dt.datetime | None,
    expires_at: dt.datetime | None,
    now: dt.datetime,
) -> tuple[bool, int | None]:
    """(the account exists, the new entry id or None when the key was taken)."""
    points, reward = fields["points"], fields["currency"] == "reward"
    params = {**_ENTRY_DEFAULTS, "occurred_at": now, **fields} | {
        "signed_points": points,
        "now": now,
        "lot_status": lot_status,
        "available_at": available_at,
        "expires_at": expires_at,
        "pays_debt": reward and lot_status == "available",
        "to_available": points if reward and lot_status == "available" else 0,
        "to_pending": points if reward and lot_status != "available" else 0,
        "to_tier": 0 if reward else points,
        "to_lifetime": points if reward else 0,
    }
    accounts, entry_id = _execute(_EARN, params)  # type: ignore[misc]
    return accounts > 0, entry_id


def insert_spending(fields: dict[str, Any], *, now: dt.datetime) -> tuple[int, int] | None:
    """(entry id, points taken from lots), or None if the balance was short or the key taken."""
    params = {**_ENTRY_DEFAULTS, "occurred_at": now, **fields} | {
        "signed_points": -fields["points"],
        "currency": "reward",
        "now": now,
    }
    row = _execute(_SPEND, params)
    return (row[0], int(row[1])) if row else None
