"""What the CRM receives for an outbox row, built when it is sent from the rows as they are then.

Every change carries the member's headline (number, status, tier, reward balance, tier points) so
the CRM's record, and its export for reconciliation, always agree with the last delivery; each kind
adds its section (profile, identities, consents, vehicles, merged numbers). Personal data (name,
phone, birthday, VIN) is read decrypted here and exists only in the request, never in the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.core.db import db
from app.crm.models import CrmOutboxEntry
from app.dealers.models import Dealer
from app.gateways import CrmChange
from app.members import services as members
from app.members.models import Member, Ownership, WechatIdentity
from app.points.models import PointAccount
from app.tiers.models import TierState


@dataclass
class Batch:
    """A delivery batch's members, accounts and tiers, loaded in three queries."""

    members: dict[int, Member]
    balances: dict[int, tuple[int, int]]  # member → (reward available, tier points)
    tiers: dict[int, str]


def preload(member_ids: list[int]) -> Batch:
    members = {m.id: m for m in db.session.scalars(sa.select(Member).where(Member.id.in_(member_ids)))}
    balances = {
        member_id: (available, tier_points)
        for member_id, available, tier_points in db.session.execute(
            sa.select(PointAccount.member_id, PointAccount.reward_available, PointAccount.tier_points).where(
                PointAccount.member_id.in_(member_ids)
            )
        )
    }
    tiers = dict(
        db.session.execute(
            sa.select(TierState.member_id, TierState.tier).where(TierState.member_id.in_(member_ids))
        ).all()
    )
    return Batch(members, balances, tiers)


def headline(member: Member, batch: Batch | None = None) -> dict[str, Any]:
    batch = batch or preload([member.id])
    available, tier_points = batch.balances.get(member.id, (0, 0))
    survivor = db.session.get(Member, member.merged_into_id) if member.merged_into_id else None
    return {
        "member_no": member.member_no,
        "status": member.status,
        "merged_into": survivor.member_no if survivor else None,
        "tier": batch.tiers.get(member.id, "silver"),
        "balance": available,
        "tier_points": tier_points,
    }


def _dealer_code(dealer_id: int | None) -> str | None:
    dealer = db.session.get(Dealer, dealer_id) if dealer_id else None  # the identity map serves repeats
    return dealer.code if dealer else None


def _profile(member: Member) -> dict[str, Any]:
    return {
        "name": member.name,
        "gender": member.gender,
        "birthday": member.birthday.isoformat() if member.birthday else None,
        "phone": member.phone,
        "city": member.city,
        "address": member.address,
        "preferred_dealer": _dealer_code(member.preferred_dealer_id),
        "locale": member.locale,
        "customer_type": member.customer_type,
        "enrollment_channel": member.enrollment_channel,
        "enrolled_at": member.enrolled_at.isoformat(),
        "profile_updated_at": member.profile_updated_at.isoformat() if member.profile_updated_at else None,
    }


def _identities(member: Member) -> list[dict[str, Any]]:
    rows = db.session.scalars(sa.select(WechatIdentity).where(WechatIdentity.member_id == member.id))
    return [{"app_kind": i.app_kind, "app_id": i.app_id, "openid": i.openid, "unionid": i.unionid} for i in rows]


def _consents(member: Member) -> dict[str, Any]:
    state = members.consent_state(member)
    return {"policy_version": state.policy_version, "purposes": state.purposes}


def _vehicles(member: Member) -> list[dict[str, Any]]:
    rows = db.session.scalars(
        sa.select(Ownership).where(Ownership.member_id == member.id).order_by(Ownership.started_on, Ownership.id)
    )
    return [
        {
            "vin": o.vehicle.vin,
            "model_code": o.vehicle.model_code,
            "role": o.role,
            "started_on": o.started_on.isoformat(),
            "ended_on": o.ended_on.isoformat() if o.ended_on else None,
        }
        for o in rows
    ]


_SECTIONS = {
    "member": ("profile",),
    "identity": ("identities",),
    "consent": ("consents",),
    "ownership": ("vehicles",),
    "tier": (),
    "balance": (),
    "merge": ("profile",),
    "snapshot": ("profile", "identities", "consents", "vehicles"),
}
_BUILDERS = {"profile": _profile, "identities": _identities, "consents": _consents, "vehicles": _vehicles}


def build_change(entry: CrmOutboxEntry, batch: Batch | None = None) -> CrmChange:
    batch = batch or preload([entry.member_id])
    member = batch.members[entry.member_id]
    payload: dict[str, Any] = {"member": headline(member, batch)}
    for section in _SECTIONS[entry.kind]:
        payload[section] = _BUILDERS[section](member)
    if entry.kind == "merge":
        payload["merged_member_nos"] = list(members.member_numbers(entry.payload.get("merged_ids", [])).values())
    return CrmChange(
        idempotency_key=entry.idempotency_key,
        member_no=member.member_no,
        seq=entry.seq,
        kind=entry.kind,
        occurred_at=entry.created_at.isoformat(),
        payload=payload,
    )
