"""The benefits package's part in a member merge (``members.merging``).

Bookings and shares move to the survivor. Entitlement entries are an append-only ledger, so they
never move: for a member-bound (benefit, year) the survivor has no entries for, what the merged
member has left is transferred (a ``transfer`` out of the merged member, a ``grant`` to the
survivor, keyed by the merge); where the survivor has entries of its own, the merged member's
quota stays with it, so nothing is granted twice and the survivor's remaining is its own.
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


def _transfer_quota(survivor: Member, merged: Member, key: str) -> int:
    """Per member-bound (benefit, year) the survivor has none of: the merged member's remaining."""
    ours = sa.select(EntitlementEntry.id).where(
        EntitlementEntry.member_id == survivor.id,
        EntitlementEntry.vehicle_id.is_(None),
        EntitlementEntry.benefit_code == sa.literal_column("theirs.benefit_code"),
        EntitlementEntry.year_start == sa.literal_column("theirs.year_start"),
    )
    theirs = (
        sa.select(
            EntitlementEntry.benefit_code,
            EntitlementEntry.year_start,
            sa.func.sum(EntitlementEntry.quantity).label("remaining"),
        )
        .where(EntitlementEntry.member_id == merged.id, EntitlementEntry.vehicle_id.is_(None))
        .group_by(EntitlementEntry.benefit_code, EntitlementEntry.year_start)
        .subquery("theirs")
    )
    rows = db.session.execute(
        sa.select(theirs.c.benefit_code, theirs.c.year_start, theirs.c.remaining).where(
            theirs.c.remaining > 0, ~sa.exists(ours)
        )
    ).all()
    for code, year_start, remaining in rows:
        common = {"benefit_code": code, "year_start": year_start, "note": f"merge {merged.id} → {survivor.id}"}
        db.session.add(
            EntitlementEntry(
                member_id=merged.id,
                kind="transfer",
                quantity=-remaining,
                idempotency_key=f"{key}:{code}:{year_start}:out",
                **common,
            )
        )
        db.session.add(
            EntitlementEntry(
                member_id=survivor.id,
                kind="grant",
                quantity=remaining,
                idempotency_key=f"{key}:{code}:{year_start}:in",
                **common,
            )
        )
    db.session.flush()
    return len(rows)


@participant("benefits", order=80)
def move_benefits(survivor: Member, merged: Member, key: str) -> dict[str, Any]:
    return {
        "bookings": move_rows(Booking, survivor, merged, unless_survivor_has=("request_id",)),
        "quotas_transferred": _transfer_quota(survivor, merged, key),
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
