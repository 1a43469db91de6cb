"""What the tier engine tells other packages (care sends the notices; the CRM outbox will follow)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.core.events import DomainEvent


@dataclass(frozen=True)
class TierChanged(DomainEvent):
    """A member's tier moved: ``reason`` is upgrade, reversal or review_drop."""

    member_id: int
    from_tier: str | None
    to_tier: str
    reason: str
    tier_points: int
    at: dt.datetime


@dataclass(frozen=True)
class TierChangesComing(DomainEvent):
    """Many members' tiers change next in this transaction (a tier review's chunk); the
    ``TierChanged`` of each of ``changes`` follows. Subscribers of ``TierChanged`` may do here, for
    all of them at once, what they would do per change (read the members' data, plan notices)."""

    changes: tuple[TierChanged, ...]

    @property
    def member_ids(self) -> tuple[int, ...]:
        return tuple(change.member_id for change in self.changes)
