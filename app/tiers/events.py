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
