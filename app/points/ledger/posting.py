"""Earning and spending: on PostgreSQL through the one-or-two-statement SQL path (``sql``), elsewhere
through the ORM; both have the same effects and the property tests run both."""

from __future__ import annotations

import datetime as dt

from app.core.clock import utcnow
from app.core.db import db
from app.points.ledger import sql
from app.points.ledger.base import (
    Earning,
    InsufficientPoints,
    Posting,
    add_entry,
    drain,
    find_entry,
    insert_account,
    lock_account,
    lot_expiry,
    make_available,
    spendable_lots,
)
from app.points.models import PointAccount, PointLot

#: "auto": SQL fast path on PostgreSQL, ORM elsewhere. Tests set "orm" to check both agree.
IMPLEMENTATION = "auto"


def _sql_path() -> bool:
    return IMPLEMENTATION == "auto" and db.dialect == "postgresql"


def _forget_cached(member_id: int) -> None:
    """The SQL path wrote behind the ORM's back: reload this member's account and lots next time."""
    session = db.session()
    for obj in list(session.identity_map.values()):
        if isinstance(obj, PointAccount | PointLot) and obj.member_id == member_id:
            session.expire(obj)


def _sql_lock(member_id: int) -> int:
    """Lock the account (creating it if needed); returns the spendable balance."""
    db.session.flush()  # ORM changes must reach the database before raw statements run
    available = sql.lock(member_id)
    if available is None:
        insert_account(member_id)
        available = sql.lock(member_id)
    return available  # type: ignore[return-value]


def _lot_plan(earning: Earning, now: dt.datetime) -> tuple[str, dt.datetime]:
    if earning.held:
        return "held", now + dt.timedelta(days=earning.pending_days)
    if earning.pending_days > 0:
        return "pending", now + dt.timedelta(days=earning.pending_days)
    return "available", now


def _entry_fields(earning: Earning, now: dt.datetime) -> dict[str, object]:
    return {
        "member_id": earning.member_id,
        "currency": earning.currency,
        "kind": earning.kind,
        "points": earning.points,
        "idempotency_key": earning.idempotency_key,
        "source_type": earning.source_type,
        "source_ref": earning.source_ref,
        "source_event_id": earning.source_event_id,
        "rule_code": earning.rule_code,
        "rule_set_id": earning.rule_set_id,
        "basis_fen": earning.basis_fen,
        "funder": earning.funder,
        "dealer_id": earning.dealer_id,
        "reason_code": earning.reason_code,
        "note": earning.note,
        "actor": earning.actor,
        "occurred_at": earning.occurred_at or now,
    }


def earn(earning: Earning, *, at: dt.datetime | None = None) -> Posting:
    """Credit points once; a repeated idempotency key returns the first posting (``new`` False)."""
    if earning.points <= 0:
        raise ValueError("earn takes positive points")
    now = at or utcnow()
    status, available_at = _lot_plan(earning, now)
    if not _sql_path():
        return _earn_orm(earning, now, status, available_at)
    db.session.flush()  # ORM changes must reach the database before raw statements run
    reward = earning.currency == "reward"
    fields = _entry_fields(earning, now)
    plan = {
        "lot_status": status,
        "available_at": available_at if reward else None,
        "expires_at": lot_expiry(now) if reward else None,
        "now": now,
    }
    has_account, entry_id = sql.insert_earning(fields, **plan)
    if not has_account:
        insert_account(earning.member_id)
        has_account, entry_id = sql.insert_earning(fields, **plan)
    _forget_cached(earning.member_id)
    if entry_id is None:
        return Posting.of(find_entry(earning.idempotency_key, earning.member_id, earning.kind), new=False)  # type: ignore[arg-type]
    return Posting(entry_id, earning.member_id, earning.currency, earning.kind, earning.points, True)


def _earn_orm(earning: Earning, now: dt.datetime, status: str, available_at: dt.datetime) -> Posting:
    account = lock_account(earning.member_id)
    existing = find_entry(earning.idempotency_key, earning.member_id, earning.kind)
    if existing is not None:
        return Posting.of(existing, new=False)
    fields = _entry_fields(earning, now)
    entry = add_entry(**fields, created_at=now)
    account.updated_at = now
    if earning.currency == "tier":
        account.tier_points += earning.points
        return Posting.of(entry, new=True)
    lot = PointLot(
        member_id=earning.member_id,
        entry_id=entry.id,
        points=earning.points,
        remaining=earning.points,
        status=status,
        available_at=available_at,
        expires_at=lot_expiry(now),
        funder=earning.funder,
        dealer_id=earning.dealer_id,
        created_at=now,
    )
    db.session.add(lot)
    account.lifetime_earned += earning.points
    account.last_activity_at = now
    if status == "available":
        db.session.flush()
        make_available(account, lot, entry)
    else:
        account.reward_pending += earning.points
    db.session.flush()
    return Posting.of(entry, new=True)


def spend(
    member_id: int,
    points: int,
    *,
    idempotency_key: str,
    source_type: str,
    source_ref: str | None = None,
    dealer_id: int | None = None,
    kind: str = "spend",
    reason_code: str | None = None,
    note: str | None = None,
    actor: str | None = None,
    at: dt.datetime | None = None,
) -> Posting:
    """Take spendable points, soonest-expiring lots first. Never below zero. Idempotent by key."""
    if points <= 0:
        raise ValueError("spend takes positive points")
    now = at or utcnow()
    fields = {
        "member_id": member_id,
        "kind": kind,
        "points": points,
        "idempotency_key": idempotency_key,
        "source_type": source_type,
        "source_ref": source_ref,
        "dealer_id": dealer_id,
        "reason_code": reason_code,
        "note": note,
        "actor": actor,
        "occurred_at": now,
    }
    if not _sql_path():
        return _spend_orm(fields, now)
    available = _sql_lock(member_id)
    result = sql.insert_spending(fields, now=now) if available >= points else None
    _forget_cached(member_id)
    if result is None:
        existing = find_entry(idempotency_key, member_id, kind)
        if existing is not None:
            return Posting.of(existing, new=False)
        raise InsufficientPoints(details={"available": available, "requested": points})
    entry_id, taken = result
    if taken != points:  # pragma: no cover - the balance said the lots hold enough; the invariant broke
        raise RuntimeError(f"account {member_id} balance disagrees with its lots by {points - taken}")
    return Posting(entry_id, member_id, "reward", kind, -points, True)


def _spend_orm(fields: dict[str, object], now: dt.datetime) -> Posting:
    member_id, points = int(fields["member_id"]), int(fields["points"])  # type: ignore[call-overload]
    account = lock_account(member_id)
    existing = find_entry(str(fields["idempotency_key"]), member_id, str(fields["kind"]))
    if existing is not None:
        return Posting.of(existing, new=False)
    if account.reward_available < points:
        raise InsufficientPoints(details={"available": account.reward_available, "requested": points})
    entry = add_entry(**{**fields, "points": -points}, currency="reward", created_at=now)
    left = drain(spendable_lots(member_id), points, entry)
    if left:  # pragma: no cover - the balance said the lots hold enough; the invariant broke
        raise RuntimeError(f"account {member_id} balance disagrees with its lots by {left}")
    account.reward_available -= points
    account.lifetime_spent += points
    account.last_activity_at = now
    account.updated_at = now
    db.session.flush()
    return Posting.of(entry, new=True)
