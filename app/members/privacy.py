"""Consent after joining (PIPL): change optional purposes at any time; withdrawing the privacy
policy itself stops all processing at once — personal data is erased and the membership closed.
Every change is audited."""

from __future__ import annotations

import sqlalchemy as sa

from app.core import audit
from app.core.clock import utcnow
from app.core.db import db
from app.members import services
from app.members.models import Member, WechatIdentity
from app.members.registration import OPTIONAL_PURPOSES, POLICY_VERSION


def set_purposes(member: Member, granted: set[str], *, channel: str = "miniapp") -> dict[str, bool]:
    """Grant exactly ``granted`` among the optional purposes; the rest are withdrawn now."""
    before = services.consent_state(member).purposes
    services.record_consent(
        member,
        policy_version=POLICY_VERSION.value(),
        granted=[p for p in OPTIONAL_PURPOSES if p in granted],
        withdrawn=[p for p in OPTIONAL_PURPOSES if p not in granted],
        channel=channel,
    )
    db.session.flush()
    after = services.consent_state(member).purposes
    changed = {p: after.get(p, False) for p in OPTIONAL_PURPOSES if before.get(p) != after.get(p)}
    if changed:
        audit.record(
            actor=("member", member.id), action="member.consent_changed", subject=("member", member.id), details=changed
        )
    return after


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
    audit.record(
        actor=("member", member.id),
        action="member.consent_withdrawn",
        subject=("member", member.id),
        details={"erased": ["name", "phone", "birthday", "city", "gender", "location"]},
    )
    db.session.flush()
