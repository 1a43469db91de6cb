"""Referrals in a member merge (``members.merging``).

Referrals the merged member made move to the survivor, and so does the referral that brought the
merged member in, unless the survivor has a current one of its own (one current referral per
referee). A referral between the two members stays as it was (it would refer oneself). The
survivor keeps its own code; the merged member's code moves only if the survivor has none, and
otherwise keeps resolving to the survivor (``attribution`` follows ``merged_into_id``). Devices
move unless the survivor already has them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from app.members.merging import move_rows, participant
from app.members.models import Member
from app.referrals.models import MemberDevice, Referral, ReferralCode


@participant("referrals", order=80)
def move_referrals(survivor: Member, merged: Member, _key: str) -> dict[str, Any]:
    current = aliased(Referral)
    survivor_is_referred = (
        sa.exists().where(current.referee_member_id == survivor.id, current.superseded_at.is_(None)).correlate(None)
    )
    referred = move_rows(
        Referral,
        survivor,
        merged,
        Referral.referrer_member_id != survivor.id,
        sa.or_(Referral.superseded_at.is_not(None), ~survivor_is_referred),
        column="referee_member_id",
    )
    return {
        "referrals_made": move_rows(
            Referral, survivor, merged, Referral.referee_member_id != survivor.id, column="referrer_member_id"
        ),
        "referred_by": referred,
        "code": move_rows(ReferralCode, survivor, merged, unless_survivor_has=()),
        "devices": move_rows(MemberDevice, survivor, merged, unless_survivor_has=("device_hash",)),
    }
