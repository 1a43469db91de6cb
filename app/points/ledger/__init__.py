"""The only writer of ledger rows besides the expiry batch (``app.points.expiry``): earn, spend,
reverse, refund, release, freeze tier points.

Every write locks the member's account row first (``SELECT … FOR UPDATE``), so writes for one
member are serialized; the unique ``idempotency_key`` makes a repeated call return the first
result instead of applying twice. Lots are drained soonest-expiring first. Services flush,
the edge commits.

* ``base``: the account lock, entries by idempotency key, lots made available and drained;
* ``posting``: earn and spend, with the PostgreSQL fast path in ``sql``;
* ``undoing``: reverse, refund a spend, release held or pending lots, freeze tier points;
* ``merging``: a merged member's lots, debt and tier points moved to the survivor.

The functions exported here publish ``BalanceChanged`` (``points/events.py``) whenever they wrote.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from app.core import events
from app.points.events import BalanceChanged
from app.points.ledger import merging, undoing
from app.points.ledger import posting as posting_module
from app.points.ledger.base import (
    EXPIRY_MONTHS,
    EXPIRY_POLICY,
    Earning,
    IdempotencyConflict,
    InsufficientPoints,
    Posting,
    find_entry,
    hold_lock,
    insert_account,
    lock_account,
    lot_expiry,
)
from app.points.ledger.undoing import REFUND_GRACE_DAYS, refunded_points, reversed_points
from app.points.models import PointEntry


def earn(earning: Earning, *, at: dt.datetime | None = None) -> Posting:
    posting = posting_module.earn(earning, at=at)
    if posting.new:
        events.publish(BalanceChanged(earning.member_id))
    return posting


def spend(member_id: int, points: int, **kwargs: Any) -> Posting:
    posting = posting_module.spend(member_id, points, **kwargs)
    if posting.new:
        events.publish(BalanceChanged(member_id))
    return posting


def reverse(original: PointEntry, points: int, **kwargs: Any) -> tuple[PointEntry, bool]:
    entry, new = undoing.reverse(original, points, **kwargs)
    if new:
        events.publish(BalanceChanged(original.member_id))
    return entry, new


def refund(spend_entry: PointEntry, points: int, **kwargs: Any) -> tuple[PointEntry, bool]:
    entry, new = undoing.refund(spend_entry, points, **kwargs)
    if new:
        events.publish(BalanceChanged(spend_entry.member_id))
    return entry, new


def release_lots(member_id: int, statuses: tuple[str, ...], *, now: dt.datetime | None = None) -> int:
    released = undoing.release_lots(member_id, statuses, now=now)
    if released:
        events.publish(BalanceChanged(member_id))
    return released


def freeze_tier_points(member_id: int, points: int, *, idempotency_key: str, at: dt.datetime | None = None) -> None:
    undoing.freeze_tier_points(member_id, points, idempotency_key=idempotency_key, at=at)
    events.publish(BalanceChanged(member_id))


def move_points(merged_id: int, survivor_id: int, *, key: str, at: dt.datetime | None = None) -> merging.Moved:
    moved = merging.move_points(merged_id, survivor_id, key=key, at=at)
    events.publish(BalanceChanged(merged_id))
    events.publish(BalanceChanged(survivor_id))
    return moved


move_points.__doc__ = merging.move_points.__doc__
earn.__doc__ = posting_module.earn.__doc__
spend.__doc__ = posting_module.spend.__doc__
reverse.__doc__ = undoing.reverse.__doc__
refund.__doc__ = undoing.refund.__doc__
release_lots.__doc__ = undoing.release_lots.__doc__
freeze_tier_points.__doc__ = undoing.freeze_tier_points.__doc__

__all__ = [
    "EXPIRY_MONTHS",
    "EXPIRY_POLICY",
    "REFUND_GRACE_DAYS",
    "Earning",
    "IdempotencyConflict",
    "InsufficientPoints",
    "Posting",
    "earn",
    "find_entry",
    "freeze_tier_points",
    "hold_lock",
    "insert_account",
    "lock_account",
    "lot_expiry",
    "move_points",
    "refund",
    "refunded_points",
    "release_lots",
    "reverse",
    "reversed_points",
    "spend",
]
