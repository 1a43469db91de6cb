"""The ledger's row mechanics, shared by its writers: the member's account lock, entries found by
idempotency key, lots made spendable (paying off debt first) and drained soonest-expiring first."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.core import tunables
from app.core.clock import BUSINESS_TZ, utcnow
from app.core.db import db
from app.core.errors import Conflict
from app.core.i18n import _l
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


def hold_lock(member_id: int) -> None:
    """Make sure this transaction holds the account's lock (``lock_account``), without a statement
    when this transaction created the account: nobody else can see that row before the commit."""
    if member_id not in _created_in_transaction():
        lock_account(member_id)


def insert_account(member_id: int) -> None:
    """Create the member's (empty) account if it does not exist; safe under concurrency."""
    created = db.session.execute(
        _insert_account_statement(db.session.get_bind().dialect.name),
        {"member_id": member_id, "updated_at": utcnow()},
    ).scalar_one_or_none()
    if created is not None:
        _created_in_transaction().add(created)


_CREATED_KEY = "point_accounts_created"


def _created_in_transaction() -> set[int]:
    """The accounts this session's current transaction inserted (locked for it until the commit)."""
    session = db.session()
    transaction = session.get_transaction()
    if transaction is None:
        return set()
    kept = session.info.get(_CREATED_KEY)
    if kept is None or kept[0] is not transaction:
        kept = (transaction, set())
        session.info[_CREATED_KEY] = kept
    return kept[1]


@sa.event.listens_for(Session, "after_soft_rollback")
def _forget_created_on_rollback(session: Session, _previous: object) -> None:
    """A rollback (of a savepoint too) may have undone an INSERT: lock by a statement again."""
    session.info.pop(_CREATED_KEY, None)


def _insert_account_statement(dialect: str) -> sa.Insert:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = PointAccount.__table__
    return insert(table).on_conflict_do_nothing(index_elements=["member_id"]).returning(table.c.member_id)


def find_entry(key: str, member_id: int, kind: str) -> PointEntry | None:
    """The entry already written under this idempotency key (for this member and kind), if any."""
    entry = db.session.scalar(sa.select(PointEntry).where(PointEntry.idempotency_key == key))
    if entry is not None and (entry.member_id != member_id or entry.kind != kind):
        raise IdempotencyConflict(details={"idempotency_key": key})
    return entry


def add_entry(**fields: object) -> PointEntry:
    """Insert one ledger entry and flush (its id is needed for the lot or allocations)."""
    entry = PointEntry(**fields)
    db.session.add(entry)
    db.session.flush()
    return entry


def make_available(account: PointAccount, lot: PointLot, entry: PointEntry) -> None:
    """Points becoming spendable pay off a reversal's debt first."""
    incoming = lot.remaining
    paid = min(account.reward_debt, incoming)
    if paid:
        account.reward_debt -= paid
        lot.remaining -= paid
        db.session.add(PointAllocation(entry_id=entry.id, lot_id=lot.id, points=-paid))
    lot.status = "available" if lot.remaining else "depleted"
    account.reward_available += incoming  # Σ lots grows by incoming − paid, the debt shrinks by paid


def spendable_lots(member_id: int) -> list[PointLot]:
    """The member's available lots, soonest-expiring first, locked."""
    return list(
        db.session.scalars(
            sa.select(PointLot)
            .where(PointLot.member_id == member_id, PointLot.status == "available", PointLot.remaining > 0)
            .order_by(PointLot.expires_at, PointLot.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def drain(lots: list[PointLot], points: int, entry: PointEntry) -> int:
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
