"""What a member can use, and why not: one answer for the mini-app catalog, entitlements and the
booking checks, so the page and the booking never disagree."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.benefits import catalog, entitlements
from app.benefits.entitlements import Entitlement, Holder
from app.benefits.models import Benefit
from app.core.clock import business_today, utcnow
from app.core.i18n import _l
from app.members.models import Member

#: Why a member cannot use a benefit now; the mini-app shows the message.
REASONS = {
    "member_inactive": _l("Your membership is not active."),
    "tier_not_eligible": _l("Not available at your tier."),
    "not_in_pilot": _l("Available to a pilot group of members for now."),
    "not_started": _l("Not available yet."),
    "ended": _l("No longer available."),
    "needs_car": _l("Add your car to your membership to use this benefit."),
    "quota_used_up": _l("You have used all of this benefit for this membership year."),
    "not_birthday": _l("Available on your birthday (set it in your profile)."),
}


@dataclass(frozen=True)
class Offer:
    """A benefit as one member sees it: usable or not (with the reason), how it would be paid."""

    benefit: Benefit
    tier: str
    pays_with: str | None  # "quota", "free" (unlimited), "points"; None when not usable
    entitlement: Entitlement | None
    reason: str | None
    vehicle_id: int | None

    @property
    def usable(self) -> bool:
        return self.reason is None

    @property
    def reason_message(self) -> str | None:
        return str(REASONS[self.reason]) if self.reason else None


def holder_for(member: Member, benefit: Benefit, vehicle_id: int | None) -> Holder | None:
    """Member-bound: the member. Car-bound: the car, which must be one of the member's now."""
    if benefit.binding == "member":
        return Holder(member.id, None)
    cars = [v.id for v in member.current_vehicles]
    chosen = vehicle_id if vehicle_id in cars else (cars[0] if vehicle_id is None and cars else None)
    return Holder(member.id, chosen) if chosen is not None else None


def _window_reason(benefit: Benefit, now: dt.datetime) -> str | None:
    if benefit.active_from is not None and now < benefit.active_from:
        return "not_started"
    if benefit.active_to is not None and now >= benefit.active_to:
        return "ended"
    return None


def _refusal(member: Member, benefit: Benefit, tier: str) -> str | None:
    """Why the member may not use the benefit at all right now (before quota), or None."""
    if member.status != "active":
        return "member_inactive"
    if tier not in benefit.eligible_tiers:
        return "tier_not_eligible"
    reason = _window_reason(benefit, utcnow())
    if reason:
        return reason
    if benefit.birthday_only and not _is_birthday(member):
        return "not_birthday"
    return None if catalog.in_pilot(benefit, member.id) else "not_in_pilot"


def _is_birthday(member: Member) -> bool:
    """The birthday is encrypted, so it is compared here, never in SQL; 29 February counts on the 28th."""
    if member.birthday is None:
        return False
    today = business_today()
    month, day = member.birthday.month, member.birthday.day
    if (month, day) == (2, 29) and today.month == 2 and today.day == 28:
        return not (today.year % 4 == 0 and (today.year % 100 != 0 or today.year % 400 == 0))
    return (today.month, today.day) == (month, day)


def offer(member: Member, benefit: Benefit, tier: str, *, vehicle_id: int | None = None, count: bool = True) -> Offer:
    """Can ``member`` (at ``tier``) use ``benefit`` now, paid how; and if not, why not. ``count=False``
    (booking) leaves what is left to the check under the holder's lock, which decides anyway."""
    reason = _refusal(member, benefit, tier)
    holder = holder_for(member, benefit, vehicle_id) if reason is None else None
    if reason is None and holder is None:
        reason = "needs_car"
    if reason is not None or holder is None:
        return Offer(benefit, tier, None, None, reason, None)
    if tier not in benefit.quotas:
        return Offer(benefit, tier, "points", None, None, holder.vehicle_id)
    if not count:
        return Offer(benefit, tier, "free" if benefit.quotas[tier] is None else "quota", None, None, holder.vehicle_id)
    position = entitlements.position(holder, benefit, tier)
    if position.unlimited:
        return Offer(benefit, tier, "free", position, None, holder.vehicle_id)
    if (position.remaining or 0) < 1:
        return Offer(benefit, tier, None, position, "quota_used_up", holder.vehicle_id)
    return Offer(benefit, tier, "quota", position, None, holder.vehicle_id)


def offers(member: Member, tier: str) -> list[Offer]:
    """Every benefit in force, as this member sees it."""
    return [offer(member, benefit, tier) for benefit in catalog.benefits_in_force()]
