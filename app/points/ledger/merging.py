"""A merge moves a merged member's points to the survivor with entries that explain it.

Per open lot (available, pending, held) of the merged member: a ``transfer`` entry
``merge_out`` takes its remaining points (an allocation empties the lot), and a ``transfer`` entry
``merge_in`` on the survivor opens a lot of the same status, lock period and **expiry**. A debt
moves as a pair of entries too (the survivor's spendable lots pay it, soonest-expiring first, the
rest stays debt); tier points move as a ``tier`` transfer pair. Both accounts are locked in id
order. Afterwards the merged member's entries sum to zero and the survivor's to its new balance.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.db import db
from app.points.ledger.base import add_entry, drain, lock_account, make_available, spendable_lots
from app.points.models import PointAllocation, PointLot

OPEN_LOTS = ("available", "pending", "held")


@dataclass(frozen=True)
class Moved:
    lots: int
    reward_points: int
    debt: int
    tier_points: int


def move_points(merged_id: int, survivor_id: int, *, key: str, at: dt.datetime | None = None) -> Moved:
    """Move everything the merged member holds to the survivor (``key`` makes each entry unique)."""
    now = at or utcnow()
    first, second = sorted((merged_id, survivor_id))
    accounts = {first: lock_account(first), second: lock_account(second)}
    source, target = accounts[merged_id], accounts[survivor_id]
    common = {"source_type": "merge", "kind": "transfer", "occurred_at": now, "created_at": now}
    lots = list(
        db.session.scalars(
            sa.select(PointLot)
            .where(PointLot.member_id == merged_id, PointLot.status.in_(OPEN_LOTS), PointLot.remaining > 0)
            .order_by(PointLot.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    moved = 0
    for lot in lots:
        points, status = lot.remaining, lot.status
        out = add_entry(
            member_id=merged_id,
            currency="reward",
            points=-points,
            idempotency_key=f"{key}:out:{lot.id}",
            reason_code="merge_out",
            source_ref=f"member:{survivor_id}",
            **common,
        )
        db.session.add(PointAllocation(entry_id=out.id, lot_id=lot.id, points=-points))
        lot.remaining, lot.status = 0, "depleted"
        entry = add_entry(
            member_id=survivor_id,
            currency="reward",
            points=points,
            idempotency_key=f"{key}:in:{lot.id}",
            reason_code="merge_in",
            source_ref=f"lot:{lot.id}",
            funder=lot.funder,
            dealer_id=lot.dealer_id,
            **common,
        )
        new_lot = PointLot(
            member_id=survivor_id,
            entry_id=entry.id,
            points=points,
            remaining=points,
            status=status,
            available_at=lot.available_at,
            expires_at=lot.expires_at,
            funder=lot.funder,
            dealer_id=lot.dealer_id,
            created_at=now,
        )
        db.session.add(new_lot)
        db.session.flush()
        if status == "available":
            source.reward_available -= points
            make_available(target, new_lot, entry)
        else:
            source.reward_pending -= points
            target.reward_pending += points
        moved += points

    debt = source.reward_debt
    if debt:
        add_entry(
            member_id=merged_id,
            currency="reward",
            points=debt,
            idempotency_key=f"{key}:debt-out",
            reason_code="merge_out",
            source_ref=f"member:{survivor_id}",
            **common,
        )
        source.reward_debt, source.reward_available = 0, source.reward_available + debt
        entry = add_entry(
            member_id=survivor_id,
            currency="reward",
            points=-debt,
            idempotency_key=f"{key}:debt-in",
            reason_code="merge_in",
            source_ref=f"member:{merged_id}",
            **common,
        )
        left = drain(spendable_lots(survivor_id), debt, entry)
        target.reward_available -= debt
        target.reward_debt += left

    tier_points = source.tier_points
    if tier_points:
        for member_id, points, direction in ((merged_id, -tier_points, "out"), (survivor_id, tier_points, "in")):
            add_entry(
                member_id=member_id,
                currency="tier",
                points=points,
                idempotency_key=f"{key}:tier-{direction}",
                reason_code=f"merge_{direction}",
                source_ref=f"member:{survivor_id if direction == 'out' else merged_id}",
                **common,
            )
        source.tier_points, target.tier_points = 0, target.tier_points + tier_points
    target.lifetime_earned += source.lifetime_earned
    source.updated_at = target.updated_at = now
    db.session.flush()
    return Moved(len(lots), moved, debt, tier_points)
