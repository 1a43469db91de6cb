"""Undoing and releasing: reversals (down to debt), refunds of spends (back into the lots they
drained), releasing held or pending lots, freezing tier points at a tier review drop."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.core import tunables
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


REFUND_GRACE_DAYS = tunables.define(
    "points.refund_grace_days",
    30,
    "Refunded points whose lot expired meanwhile come back in a new lot valid for N days",
)


def refund(
    spend_entry: PointEntry,
    points: int,
    *,
    idempotency_key: str,
    source_type: str,
    source_ref: str | None = None,
    reason_code: str | None = None,
    note: str | None = None,
    actor: str | None = None,
    at: dt.datetime | None = None,
) -> tuple[PointEntry, bool]:
    """Give (part of) a spend back into the lots it drained, each keeping its own expiry.

    Lots are refilled latest-expiring first (the reverse of the spend), so successive partial
    refunds never refill a lot twice. Points whose lot has expired (or was closed) meanwhile come
    back in one new lot of this refund entry, valid ``points.refund_grace_days`` (30) from now. A
    debt is paid off first. Up to what the spend took, idempotent by key, under the account lock."""
    if points <= 0:
        raise ValueError("refund takes positive points")
    if spend_entry.kind != "spend" or spend_entry.currency != "reward":
        raise ValueError("refund gives back a reward spend")
    now = at or utcnow()
    account = lock_account(spend_entry.member_id)
    existing = find_entry(idempotency_key, spend_entry.member_id, "refund")
    if existing is not None:
        return existing, False
    already = refunded_points(spend_entry.id)
    points = min(points, -spend_entry.points - already)
    if points <= 0:
        raise Conflict(details={"reason": "already_refunded", "entry": spend_entry.id})
    entry = add_entry(
        member_id=spend_entry.member_id,
        currency="reward",
        kind="refund",
        points=points,
        idempotency_key=idempotency_key,
        source_type=source_type,
        source_ref=source_ref or spend_entry.source_ref,
        funder=spend_entry.funder,
        dealer_id=spend_entry.dealer_id,
        reverses_entry_id=spend_entry.id,
        reason_code=reason_code,
        note=note,
        actor=actor,
        occurred_at=now,
        created_at=now,
    )
    paid = min(account.reward_debt, points)
    account.reward_debt -= paid
    expired = 0
    for lot, share in _refund_shares(spend_entry, skip=already + paid, points=points - paid):
        if lot.status in ("available", "depleted") and lot.expires_at > now:
            lot.remaining += share
            lot.status = "available"
            db.session.add(PointAllocation(entry_id=entry.id, lot_id=lot.id, points=share))
        else:
            expired += share
    if expired:
        db.session.add(
            PointLot(
                member_id=entry.member_id,
                entry_id=entry.id,
                points=expired,
                remaining=expired,
                status="available",
                available_at=now,
                expires_at=now + dt.timedelta(days=REFUND_GRACE_DAYS.value()),
                funder=entry.funder,
                dealer_id=entry.dealer_id,
                created_at=now,
            )
        )
    account.reward_available += points  # Σ lots grows by points − paid, the debt shrinks by paid
    account.lifetime_spent -= points
    account.updated_at = now
    db.session.flush()
    return entry, True


def _refund_shares(spend_entry: PointEntry, *, skip: int, points: int) -> list[tuple[PointLot, int]]:
    """The lots a spend drained, latest-expiring first and locked, with what this refund returns to
    each: the ``points`` after the first ``skip`` (given back by earlier refunds or to a debt)."""
    drained = db.session.execute(
        sa.select(PointLot, -PointAllocation.points)
        .join(PointAllocation, PointAllocation.lot_id == PointLot.id)
        .where(PointAllocation.entry_id == spend_entry.id, PointAllocation.points < 0)
        .order_by(PointLot.expires_at.desc(), PointLot.id.desc())
        .with_for_update(of=PointLot)
        .execution_options(populate_existing=True)
    ).all()
    shares = []
    for lot, took in drained:
        skipped = min(skip, took)
        skip -= skipped
        share = min(took - skipped, points)
        if share > 0:
            shares.append((lot, share))
            points -= share
    return shares


def refunded_points(spend_id: int) -> int:
    """How much of a spend has been refunded so far."""
    total = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(PointEntry.points), 0)).where(
            PointEntry.reverses_entry_id == spend_id, PointEntry.kind == "refund"
        )
    )
    return int(total)
