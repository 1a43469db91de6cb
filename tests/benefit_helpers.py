"""Shared set-up for the benefit tests: the default catalog, slots, tiers and points."""

from __future__ import annotations

import datetime as dt
import itertools

from app.benefits import catalog
from app.benefits.models import DealerSlot
from app.core.clock import business_today, to_business, utcnow
from app.core.db import db
from app.dealers.models import Dealer
from app.members.models import Member
from app.points import ledger
from app.tiers import policy

_minutes = itertools.count(1)


def seed_catalog() -> None:
    catalog.seed_defaults(actor="test")


def slot(
    dealer: Dealer,
    service_type: str = "test_drive",
    *,
    hours_ahead: float = 72,
    capacity: int = 5,
    day: dt.date | None = None,
    minutes: int = 60,
) -> DealerSlot:
    """A slot written directly (the publishing rules are tested on their own)."""
    # a minute apart per slot: (dealer, service, start) is unique
    starts = utcnow().replace(second=0, microsecond=0) + dt.timedelta(hours=hours_ahead, minutes=next(_minutes) % 50)
    row = DealerSlot(
        dealer_id=dealer.id,
        service_type=service_type,
        day=day or to_business(starts).date(),
        starts_at=starts,
        ends_at=starts + dt.timedelta(minutes=minutes),
        capacity=capacity,
        created_by="test",
    )
    db.session.add(row)
    db.session.flush()
    return row


def today_slot(dealer: Dealer, service_type: str = "test_drive") -> DealerSlot:
    """A slot that counts as today's at the dealer (for check-in), starting a minute from now."""
    return slot(dealer, service_type, hours_ahead=1 / 60, day=business_today())


def set_tier(member: Member, tier: str) -> None:
    """Move the member's tier the way the tier engine does (publishing TierChanged)."""
    state = policy.get_state(member.id, lock=True)
    reason = "upgrade" if policy.tier_rank(tier) > policy.tier_rank(state.tier) else "review_drop"
    policy.change_tier(state, tier, reason, 0, utcnow())
    db.session.flush()


def give_points(member: Member, points: int, key: str = "gift") -> None:
    ledger.earn(
        ledger.Earning(
            member_id=member.id,
            currency="reward",
            points=points,
            idempotency_key=f"test:{key}:{member.id}",
            source_type="test",
        )
    )
