"""The benefits package's part in a member merge (``members.merging``).

Bookings and shares move to the survivor. Entitlement entries (an append-only ledger) never move:
a member's remaining quota is its tier's quota for the year less its own uses (grant rows only
follow the tier), so the survivor keeps exactly its own remaining and nothing is granted twice; the
merged member's unused quota lapses with the account (one customer, one quota). An open booking
that moves carries its quota use along (a ``use`` row on the survivor, keyed by the merge), so
that cancelling it later gives back what the survivor holds, not a unit it never used.
Car-bound entries count per car and follow the car. A booking or share whose request id the
survivor already used stays (the unique key), and so does a share between the two members (it
would become a share to oneself)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from app.benefits.models import BenefitShare, Booking, EntitlementEntry, PilotMember
from app.core.db import db
from app.members.merging import move_rows, participant
from app.members.models import Member


def _carry_open_uses(survivor: Member, merged: Member, key: str) -> int:
    """The member-bound quota uses of the merged member's open bookings (now the survivor's)."""
    uses = db.session.scalars(
        sa.select(EntitlementEntry)
        .join(Booking, Booking.id == EntitlementEntry.booking_id)
        .where(
            EntitlementEntry.member_id == merged.id,
            EntitlementEntry.vehicle_id.is_(None),
            EntitlementEntry.kind == "use",
            Booking.member_id == survivor.id,
            Booking.status == "booked",
        )
    ).all()
    for use in uses:
        db.session.add(
            EntitlementEntry(
                member_id=survivor.id,
                benefit_code=use.benefit_code,
                year_start=use.year_start,
                kind="use",
                quantity=use.quantity,
                tier=use.tier,
                booking_id=use.booking_id,
                idempotency_key=f"{key}:use:{use.id}",
                note=f"merged from member {merged.id}",
            )
        )
    db.session.flush()
    return len(uses)


@participant("benefits", order=80)
def move_benefits(survivor: Member, merged: Member, key: str) -> dict[str, Any]:
    bookings = move_rows(Booking, survivor, merged, unless_survivor_has=("request_id",))
    return {
        "bookings": bookings,
        "open_uses_carried": _carry_open_uses(survivor, merged, key),
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
