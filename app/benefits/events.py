"""What benefits does when others' events happen: a tier change settles the member's quotas at once
(grant the difference on an upgrade, revoke the unused excess on a downgrade), so the entitlement
rows always explain what is left; a month's dealer settlement gets the cost lines of the benefits
each dealer delivered."""

from __future__ import annotations

from app.benefits import catalog, costs, entitlements
from app.benefits.entitlements import Holder
from app.core import events
from app.core.db import db
from app.members.models import Member
from app.points import settlement
from app.points.events import SettlementMonthComputing
from app.tiers.events import TierChanged


@events.within_transaction(TierChanged)
def settle_quotas_on_tier_change(event: TierChanged) -> None:
    """Write the grant or revocation rows of the new tier for this membership year."""
    member = db.session.get(Member, event.member_id)
    if member is None:
        return
    for benefit in catalog.benefits_in_force():  # the catalog in force now: the year being settled is now
        if not benefit.quotas:
            continue
        holders = (
            [Holder(member.id, v.id) for v in member.current_vehicles]
            if benefit.binding == "car"
            else [Holder(member.id, None)]
        )
        for holder in holders:
            year_start, _end = entitlements.membership_year(holder)
            entitlements.lock(holder, benefit.code, year_start)
            position = entitlements.position(holder, benefit, event.to_tier)
            entitlements.settle_grants(holder, benefit, event.to_tier, position)


@events.within_transaction(SettlementMonthComputing)
def settle_delivered_benefits(event: SettlementMonthComputing) -> None:
    """The month's delivered benefits join each delivering dealer's statement (cost and funder)."""
    settlement.replace_lines(event.month, "benefit", costs.delivered_cost_lines(event.starts_at, event.ends_at))
