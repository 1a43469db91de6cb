"""The benefits package's part in a member merge (``members.merging``).

Bookings and shares move to the survivor. Entitlement entries (the member-bound quota ledger) of
the merged member move only for a (benefit, year) the survivor has no entries for; otherwise they
stay with the merged member, so nothing is granted twice and the survivor's remaining is its own.
A booking or share whose request id the survivor already used stays (the unique key), and so does a
share between the two members (it would become a share to oneself)."""

from __future__ import annotations

from typing import Any

from app.benefits.models import BenefitShare, Booking, EntitlementEntry, PilotMember
from app.members.merging import move_rows, participant
from app.members.models import Member


@participant("benefits", order=80)
def move_benefits(survivor: Member, merged: Member, _key: str) -> dict[str, Any]:
    return {
        "bookings": move_rows(Booking, survivor, merged, unless_survivor_has=("request_id",)),
        "entitlement_entries": move_rows(
            EntitlementEntry, survivor, merged, unless_survivor_has=("benefit_code", "year_start")
        ),
        "shares_given": move_rows(
            BenefitShare,
            survivor,
            merged,
            BenefitShare.claimed_by_member_id.is_distinct_from(survivor.id),
            column="from_member_id",
            unless_survivor_has=("request_id",),
        ),
        "shares_claimed": move_rows(
            BenefitShare,
            survivor,
            merged,
            BenefitShare.from_member_id != survivor.id,
            column="claimed_by_member_id",
        ),
        "pilot": move_rows(PilotMember, survivor, merged, unless_survivor_has=()),
    }
