"""Consent after joining (PIPL): change optional purposes at any time; withdrawing the privacy
policy itself stops all processing at once — personal data is erased and the membership closed.
Every change is audited."""

from __future__ import annotations

import sqlalchemy as sa

from app.core import audit
from app.core.clock import business_today, utcnow
from app.core.db import db
from app.members import registration, services
from app.members.models import Member, Ownership, WechatIdentity
from app.members.registration import OPTIONAL_PURPOSES, POLICY_VERSION
from app.members.vehicle_claims import VehicleClaim


def set_purposes(
    member: Member, granted: set[str], *, policy_version: str | None = None, channel: str = "miniapp"
) -> dict[str, bool]:
    """Grant exactly ``granted`` among the optional purposes; the rest are withdrawn now.

    A member who has not accepted the current policy version must accept it here, explicitly, by
    sending that version (the acceptance is audited); otherwise the change is refused.
    """
    accepting = registration.needs_consent(member)
    if policy_version is not None:
        registration.check_policy_version(policy_version)
    elif accepting:
        registration.require_current_consent(member)
    before = services.consent_state(member).purposes
    services.record_consent(
        member,
        policy_version=POLICY_VERSION.value(),
        granted=[p for p in OPTIONAL_PURPOSES if p in granted],
        withdrawn=[p for p in OPTIONAL_PURPOSES if p not in granted],
        channel=channel,
        accept_policy=accepting,
    )
    db.session.flush()
    after = services.consent_state(member).purposes
    changed: dict[str, object] = {p: after.get(p, False) for p in OPTIONAL_PURPOSES if before.get(p) != after.get(p)}
    if accepting:
        changed["privacy_policy_version"] = POLICY_VERSION.value()
    if changed:
        audit.record(
            actor=("member", member.id), action="member.consent_changed", subject=("member", member.id), details=changed
        )
    return after


ERASED_ON_WITHDRAWAL = ("name", "phone", "birthday", "city", "gender", "location", "plates")


def withdraw_everything(member: Member, *, channel: str = "miniapp") -> None:
    """The member withdraws consent to the privacy policy: erase personal data, close the membership."""
    services.record_consent(
        member,
        policy_version=POLICY_VERSION.value(),
        granted=[],
        withdrawn=["privacy_policy", *OPTIONAL_PURPOSES],
        channel=channel,
    )
    member.name = member.birthday = member.city = member.gender = None
    member.phone = member.phone_index = None
    member.status = "closed"
    member.updated_at = utcnow()
    for identity in db.session.scalars(sa.select(WechatIdentity).where(WechatIdentity.member_id == member.id)):
        identity.member_id = None  # the WeChat account is no longer linked to anyone
        identity.latitude = identity.longitude = None
    today = business_today()
    cars = db.session.execute(
        sa.update(Ownership)
        .where(Ownership.member_id == member.id, Ownership.ended_on.is_(None))
        .values(ended_on=today, end_reason="consent_withdrawn")
    ).rowcount
    db.session.execute(
        sa.update(VehicleClaim)
        .where(VehicleClaim.member_id == member.id, VehicleClaim.status == "pending")
        .values(status="rejected", plate=None, decided_at=utcnow(), note="consent withdrawn")
    )
    audit.record(
        actor=("member", member.id),
        action="member.consent_withdrawn",
        subject=("member", member.id),
        details={
            "erased": ["name", "phone", "birthday", "city", "gender", "location", "plates"],
            "cars_unlinked": cars,
        },
    )
    db.session.flush()
