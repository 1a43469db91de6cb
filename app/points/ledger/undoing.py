"""Undoing and releasing: reversals (down to debt), releasing held or pending lots, freezing tier
points at a tier review drop."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import Conflict
from app.points.ledger.base import add_entry, drain, find_entry, lock_account, make_available, spendable_lots
from app.points.models import PointAllocation, PointEntry, PointLot


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
    existing = find_entry(idempotency_key, original.member_id, "reverse")
    if existing is not None:
        return existing, False
    points = min(points, original.points - reversed_points(original.id))
    if points <= 0:
        raise Conflict(details={"reason": "already_reversed", "entry": original.id})
    entry = add_entry(
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
        lots = spendable_lots(original.member_id)
        if own_lot is not None and own_lot in lots:  # its own lot first, then soonest-expiring
            lots.remove(own_lot)
            lots.insert(0, own_lot)
        taken = left - drain(lots, left, entry)
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
        make_available(account, lot, entry)  # type: ignore[arg-type]
    account.updated_at = now
    db.session.flush()
    return released


def freeze_tier_points(member_id: int, points: int, *, idempotency_key: str, at: dt.datetime | None = None) -> None:
    """A tier review drop: tier points above the lower tier's threshold stop counting."""
    now = at or utcnow()
    account = lock_account(member_id)
    if find_entry(idempotency_key, member_id, "expire") is not None:
        return
    add_entry(
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
