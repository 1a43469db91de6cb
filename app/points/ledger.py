"""The only writer of ledger rows: earn, spend, reverse, adjust, release, activate held points.

Every write locks the member's account row first (``SELECT … FOR UPDATE``), so writes for one
member are serialized; the unique ``idempotency_key`` makes a repeated call return the first
result instead of applying twice. Lots are drained soonest-expiring first. Services flush,
the edge commits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from app.core import tunables
from app.core.clock import BUSINESS_TZ, utcnow
from app.core.db import db
from app.core.errors import Conflict
from app.core.i18n import _l
from app.points import ledger_sql
from app.points.models import PointAccount, PointAllocation, PointEntry, PointLot

EXPIRY_MONTHS = tunables.define(
    "points.expiry_months", 24, "Reward points expire at the end of the month N months after earning"
)
EXPIRY_POLICY = tunables.define(
    "points.expiry_policy",
    "per_lot",
    "per_lot: each lot expires on its own date; inactivity: all after N months idle",
)


class InsufficientPoints(Conflict):
    code = "insufficient_points"
    default_message = _l("Not enough points.")


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"
    default_message = _l("This request id was already used for a different operation.")


@dataclass(frozen=True)
class Earning:
    """What to credit. ``pending_days`` > 0 puts reward points in a lock period; ``held`` keeps them
    until the member activates (purchase points of a pre-enrolled buyer)."""

    member_id: int
    currency: str
    points: int
    idempotency_key: str
    source_type: str
    source_ref: str | None = None
    source_event_id: int | None = None
    rule_code: str | None = None
    rule_set_id: int | None = None
    basis_fen: int | None = None
    funder: str = "oem"
    dealer_id: int | None = None
    pending_days: int = 0
    held: bool = False
    kind: str = "earn"
    reason_code: str | None = None
    note: str | None = None
    actor: str | None = None
    occurred_at: dt.datetime | None = None


def lot_expiry(earned_at: dt.datetime, months: int | None = None) -> dt.datetime:
    """End of the month ``months`` after the earning month, on the business calendar (as UTC)."""
    months = EXPIRY_MONTHS.value() if months is None else months
    local = earned_at.astimezone(BUSINESS_TZ)
    index = local.year * 12 + (local.month - 1) + months + 1  # the month after the expiry month
    first_of_next = dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=BUSINESS_TZ)
    return first_of_next.astimezone(dt.UTC)


def lock_account(member_id: int) -> PointAccount:
    """The member's account row, locked for this transaction (created on first use)."""
    query = sa.select(PointAccount).where(PointAccount.member_id == member_id).with_for_update()
    account = db.session.scalars(query.execution_options(populate_existing=True)).one_or_none()
    if account is None:
        insert_account(member_id)
        account = db.session.scalars(query.execution_options(populate_existing=True)).one()
    return account


def insert_account(member_id: int) -> None:
    """Create the member's (empty) account if it does not exist; safe under concurrency."""
    db.session.execute(
        _insert_account_statement(db.session.get_bind().dialect.name),
        {"member_id": member_id, "updated_at": utcnow()},
    )


def _insert_account_statement(dialect: str) -> sa.Insert:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(PointAccount.__table__).on_conflict_do_nothing(index_elements=["member_id"])


def _existing(key: str, member_id: int, kind: str) -> PointEntry | None:
    entry = db.session.scalar(sa.select(PointEntry).where(PointEntry.idempotency_key == key))
    if entry is not None and (entry.member_id != member_id or entry.kind != kind):
        raise IdempotencyConflict(details={"idempotency_key": key})
    return entry


def _add_entry(**fields: object) -> PointEntry:
    entry = PointEntry(**fields)
    db.session.add(entry)
    db.session.flush()
    return entry


@dataclass(frozen=True)
class Posting:
    """The result of an earn or spend: the entry, and whether this call created it."""

    id: int
    member_id: int
    currency: str
    kind: str
    points: int
    new: bool

    @classmethod
    def of(cls, entry: PointEntry, *, new: bool) -> Posting:
        return cls(entry.id, entry.member_id, entry.currency, entry.kind, entry.points, new)


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
    available = ledger_sql.lock(member_id)
    if available is None:
        insert_account(member_id)
        available = ledger_sql.lock(member_id)
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
    has_account, entry_id = ledger_sql.insert_earning(fields, **plan)
    if not has_account:
        insert_account(earning.member_id)
        has_account, entry_id = ledger_sql.insert_earning(fields, **plan)
    _forget_cached(earning.member_id)
    if entry_id is None:
        return Posting.of(_existing(earning.idempotency_key, earning.member_id, earning.kind), new=False)  # type: ignore[arg-type]
    return Posting(entry_id, earning.member_id, earning.currency, earning.kind, earning.points, True)


def _earn_orm(earning: Earning, now: dt.datetime, status: str, available_at: dt.datetime) -> Posting:
    account = lock_account(earning.member_id)
    existing = _existing(earning.idempotency_key, earning.member_id, earning.kind)
    if existing is not None:
        return Posting.of(existing, new=False)
    fields = _entry_fields(earning, now)
    entry = _add_entry(**fields, created_at=now)
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
        _make_available(account, lot, entry)
    else:
        account.reward_pending += earning.points
    db.session.flush()
    return Posting.of(entry, new=True)


def _make_available(account: PointAccount, lot: PointLot, entry: PointEntry) -> None:
    """Points becoming spendable pay off a reversal's debt first."""
    incoming = lot.remaining
    paid = min(account.reward_debt, incoming)
    if paid:
        account.reward_debt -= paid
        lot.remaining -= paid
        db.session.add(PointAllocation(entry_id=entry.id, lot_id=lot.id, points=-paid))
    lot.status = "available" if lot.remaining else "depleted"
    account.reward_available += incoming  # Σ lots grows by incoming − paid, the debt shrinks by paid


def _spendable_lots(member_id: int) -> list[PointLot]:
    return list(
        db.session.scalars(
            sa.select(PointLot)
            .where(PointLot.member_id == member_id, PointLot.status == "available", PointLot.remaining > 0)
            .order_by(PointLot.expires_at, PointLot.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def _drain(lots: list[PointLot], points: int, entry: PointEntry) -> int:
    """Take up to ``points`` from ``lots`` in order; returns what could not be taken."""
    left = points
    for lot in lots:
        if left == 0:
            break
        take = min(lot.remaining, left)
        if take == 0:
            continue
        lot.remaining -= take
        if lot.remaining == 0 and lot.status == "available":
            lot.status = "depleted"
        db.session.add(PointAllocation(entry_id=entry.id, lot_id=lot.id, points=-take))
        left -= take
    return left


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
    result = ledger_sql.insert_spending(fields, now=now) if available >= points else None
    _forget_cached(member_id)
    if result is None:
        existing = _existing(idempotency_key, member_id, kind)
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
    existing = _existing(str(fields["idempotency_key"]), member_id, str(fields["kind"]))
    if existing is not None:
        return Posting.of(existing, new=False)
    if account.reward_available < points:
        raise InsufficientPoints(details={"available": account.reward_available, "requested": points})
    entry = _add_entry(**{**fields, "points": -points}, currency="reward", created_at=now)
    left = _drain(_spendable_lots(member_id), points, entry)
    if left:  # pragma: no cover - the balance said the lots hold enough; the invariant broke
        raise RuntimeError(f"account {member_id} balance disagrees with its lots by {left}")
    account.reward_available -= points
    account.lifetime_spent += points
    account.last_activity_at = now
    account.updated_at = now
    db.session.flush()
    return Posting.of(entry, new=True)


def reverse(
    original: PointEntry,
    points: int,
    *,
    idempotency_key: str,
    source_type: str,
    source_ref: str | None = None,
    source_event_id: int | None = None,
    basis_fen: int | None = None,
    note: str | None = None,
    actor: str | None = None,
    at: dt.datetime | None = None,
) -> tuple[PointEntry, bool]:
    """Take back (part of) an earning: from its own lot while pending or unspent, then from other
    lots soonest-expiring first; whatever is already spent becomes a debt (the only way a balance
    goes negative). Tier points are simply reduced."""
    if points <= 0:
        raise ValueError("reverse takes positive points")
    now = at or utcnow()
    account = lock_account(original.member_id)
    existing = _existing(idempotency_key, original.member_id, "reverse")
    if existing is not None:
        return existing, False
    points = min(points, original.points - reversed_points(original.id))
    if points <= 0:
        raise Conflict(details={"reason": "already_reversed", "entry": original.id})
    entry = _add_entry(
        member_id=original.member_id,
        currency=original.currency,
        kind="reverse",
        points=-points,
        idempotency_key=idempotency_key,
        source_type=source_type,
        source_ref=source_ref or original.source_ref,
        source_event_id=source_event_id,
        rule_code=original.rule_code,
        funder=original.funder,
        dealer_id=original.dealer_id,
        reverses_entry_id=original.id,
        basis_fen=basis_fen,
        note=note,
        actor=actor,
        occurred_at=now,
        created_at=now,
    )
    account.updated_at = now
    if original.currency == "tier":
        account.tier_points = max(0, account.tier_points - points)
        return entry, True

    own_lot = db.session.scalar(
        sa.select(PointLot)
        .where(PointLot.entry_id == original.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    left = points
    if own_lot is not None and own_lot.status in ("held", "pending") and own_lot.remaining:
        take = min(own_lot.remaining, left)
        own_lot.remaining -= take
        account.reward_pending -= take
        if own_lot.remaining == 0:
            own_lot.status = "reversed"
        db.session.add(PointAllocation(entry_id=entry.id, lot_id=own_lot.id, points=-take))
        left -= take
    if left:
        lots = _spendable_lots(original.member_id)
        if own_lot is not None and own_lot in lots:  # its own lot first, then soonest-expiring
            lots.remove(own_lot)
            lots.insert(0, own_lot)
        taken = left - _drain(lots, left, entry)
        account.reward_available -= taken
        left -= taken
    if left:
        account.reward_debt += left
        account.reward_available -= left
    db.session.flush()
    return entry, True


def reversed_points(entry_id: int) -> int:
    """How much of an entry has been reversed so far (a positive number)."""
    total = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(PointEntry.points), 0)).where(PointEntry.reverses_entry_id == entry_id)
    )
    return -int(total)


def release_lots(member_id: int, statuses: tuple[str, ...], *, now: dt.datetime | None = None) -> int:
    """Make due pending (or, at activation, held) lots spendable; returns the points released."""
    now = now or utcnow()
    account = lock_account(member_id)
    query = sa.select(PointLot).where(PointLot.member_id == member_id, PointLot.status.in_(statuses))
    if statuses == ("pending",):
        query = query.where(PointLot.available_at <= now)
    released = 0
    for lot in db.session.scalars(
        query.order_by(PointLot.id).with_for_update().execution_options(populate_existing=True)
    ):
        if lot.status == "held" and lot.available_at and lot.available_at > now:
            lot.status = "pending"  # activation ends the hold; a lock period still runs
            continue
        account.reward_pending -= lot.remaining
        entry = db.session.get(PointEntry, lot.entry_id)
        released += lot.remaining
        _make_available(account, lot, entry)  # type: ignore[arg-type]
    account.updated_at = now
    db.session.flush()
    return released


def freeze_tier_points(member_id: int, points: int, *, idempotency_key: str, at: dt.datetime | None = None) -> None:
    """A tier review drop: tier points above the lower tier's threshold stop counting."""
    now = at or utcnow()
    account = lock_account(member_id)
    if _existing(idempotency_key, member_id, "expire") is not None:
        return
    _add_entry(
        member_id=member_id,
        currency="tier",
        kind="expire",
        points=-points,
        idempotency_key=idempotency_key,
        source_type="tier_review",
        occurred_at=now,
        created_at=now,
    )
    account.tier_points -= points
    account.updated_at = now
