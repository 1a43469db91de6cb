"""Anti-fraud: self-referrals are refused; bursts, rings and shared-device clusters are flagged
for a supervisor (their rewards wait for the decision)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from app.core import tunables
from app.core.db import db
from app.members.models import Member, Ownership, WechatIdentity
from app.referrals.codes import members_on_device
from app.referrals.models import MemberDevice, Referral

BURST_PER_HOUR = tunables.define(
    "referrals.burst_leads_per_hour", 5, "Leads per hour from one code above which new ones are flagged"
)
DEVICE_CLUSTER = tunables.define(
    "referrals.device_cluster_members", 2, "Members on one device from which referrals through it are flagged"
)
RING_DEPTH = 10  # how far up the referral chain a ring is looked for


def _unionids(member_id: int) -> set[str]:
    return set(
        db.session.scalars(
            sa.select(WechatIdentity.unionid).where(
                WechatIdentity.member_id == member_id, WechatIdentity.unionid.is_not(None)
            )
        )
    )


def _share_a_car(a: int, b: int) -> bool:
    """Same household: both linked to one car (owner, co-user or family member)."""
    mine, theirs = aliased(Ownership), aliased(Ownership)
    return (
        db.session.scalar(
            sa.select(sa.literal(1))
            .select_from(mine)
            .join(theirs, theirs.vehicle_id == mine.vehicle_id)
            .where(mine.member_id == a, theirs.member_id == b)
            .limit(1)
        )
        is not None
    )


def _same_household(a: Member, b: Member) -> bool:
    """The same home address (normalized, by its blind index) or a shared car."""
    same_address = a.address_index is not None and a.address_index == b.address_index
    return same_address or _share_a_car(a.id, b.id)


def self_referral(referrer: Member, referee: Member, device: str | None) -> str | None:
    """Why this is the referrer referring themself (phone, unionid, device, household: the same home
    address or a shared car), or None."""
    if referrer.id == referee.id:
        return "same_member"
    if referrer.phone_index and referrer.phone_index == referee.phone_index:
        return "phone"
    if _unionids(referrer.id) & _unionids(referee.id):
        return "unionid"
    if device and db.session.get(MemberDevice, (referrer.id, device)) is not None:
        return "device"
    if _same_household(referrer, referee):
        return "household"
    return None


def _referrer_of(member_id: int) -> int | None:
    return db.session.scalar(
        sa.select(Referral.referrer_member_id).where(
            Referral.referee_member_id == member_id, Referral.superseded_at.is_(None)
        )
    )


def _in_ring(referrer_id: int, referee_id: int) -> bool:
    """Would referrer → referee close a loop (A→B→A, A→B→C→A)?"""
    current: int | None = referrer_id
    for _ in range(RING_DEPTH):
        current = _referrer_of(current)  # type: ignore[arg-type]
        if current is None:
            return False
        if current == referee_id:
            return True
    return False


def flags_for(referrer_id: int, referee_id: int, code: str, device: str | None, at: dt.datetime) -> list[str]:
    """What makes a new attribution suspicious enough for a supervisor to look at it."""
    flags = []
    recent = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(Referral)
        .where(Referral.code == code, Referral.attributed_at > at - dt.timedelta(hours=1), Referral.attributed_at <= at)
    )
    if (recent or 0) >= BURST_PER_HOUR.value():
        flags.append("burst")
    if _in_ring(referrer_id, referee_id):
        flags.append("ring")
    if device and len(members_on_device(device) | {referee_id}) >= DEVICE_CLUSTER.value():
        flags.append("shared_device")
    return flags
