"""The only writer of ledger rows besides the expiry batch (``app.points.expiry``): earn, spend,
reverse, refund, release, freeze tier points.

Every write locks the member's account row first (``SELECT … FOR UPDATE``), so writes for one
member are serialized; the unique ``idempotency_key`` makes a repeated call return the first
result instead of applying twice. Lots are drained soonest-expiring first. Services flush,
the edge commits.

* ``base``: the account lock, entries by idempotency key, lots made available and drained;
* ``posting``: earn and spend, with the PostgreSQL fast path in ``sql``;
* ``undoing``: reverse, refund a spend, release held or pending lots, freeze tier points.
"""

from __future__ import annotations

from app.points.ledger.base import (
    EXPIRY_MONTHS,
    EXPIRY_POLICY,
    Earning,
    IdempotencyConflict,
    InsufficientPoints,
    Posting,
    find_entry,
    insert_account,
    lock_account,
    lot_expiry,
)
from app.points.ledger.posting import earn, spend
from app.points.ledger.undoing import (
    REFUND_GRACE_DAYS,
    freeze_tier_points,
    refund,
    refunded_points,
    release_lots,
    reverse,
    reversed_points,
)

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
    "insert_account",
    "lock_account",
    "lot_expiry",
    "refund",
    "refunded_points",
    "release_lots",
    "reverse",
    "reversed_points",
    "spend",
]
