"""Consent after joining (PIPL): change optional purposes at any time; withdrawing the privacy
policy itself stops all processing at once — personal data is erased and the membership closed.
Every change is audited."""

from __future__ import annotations

import sqlalchemy as sa

from app.core import audit, events, inbox
from app.core.clock import utcnow
from app.core.db import db
from app.members import registration, services
from app.members.events import MemberChanged, MemberErased
from app.members.models import EnrollmentToken, Member, Ownership, Vehicle, WechatIdentity
from app.members.registration import OPTIONAL_PURPOSES, POLICY_VERSION
from app.members.vehicle_claims import VehicleClaim
from app.points.models import PointEntry


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


ERASED_ON_WITHDRAWAL = (
    "name",
    "phone",
    "birthday",
    "city",
    "address",
    "gender",
    "location",
    "plates",
    "car_links",
    "vehicle_claims",
    "raw_events",
)


def _source_events(member: Member) -> list[int]:
    """Inbound events about this member we can name: what enrolled them, linked their cars, earned."""
    ids: set[int] = set()
    for column, where in (
        (Ownership.source_event_id, Ownership.member_id == member.id),
        (EnrollmentToken.source_event_id, EnrollmentToken.member_id == member.id),
        (PointEntry.source_event_id, PointEntry.member_id == member.id),
    ):
        ids.update(i for i in db.session.scalars(sa.select(column).where(where, column.is_not(None)).distinct()))
    return sorted(ids)


def withdraw_everything(member: Member, *, channel: str = "miniapp") -> None:
    """The member withdraws consent to the privacy policy: erase personal data, close the membership.

    Erased: the profile (name, phone, birthday, city, home address, gender), WeChat links and location, every car
    link (current and ended: nothing ties the member number to a VIN any more), the plates of cars
    no one else is linked to, vehicle claims, the car on enrollment tokens, and the raw bodies of
    the inbound events that concern them (a SHA-256 of each stays). Kept: the member number, the
    points ledger and the consent and audit records (evidence), which name no personal data.
    """
    services.record_consent(
        member,
        policy_version=POLICY_VERSION.value(),
        granted=[],
        withdrawn=["privacy_policy", *OPTIONAL_PURPOSES],
        channel=channel,
    )
    member.name = member.birthday = member.city = member.address = member.gender = None
    member.phone = member.phone_index = None
    member.status = "closed"
    member.profile_updated_at = utcnow()
    events.publish(MemberChanged(member.id))
    member.updated_at = utcnow()
    for identity in db.session.scalars(sa.select(WechatIdentity).where(WechatIdentity.member_id == member.id)):
        identity.member_id = None  # the WeChat account is no longer linked to anyone
        identity.latitude = identity.longitude = None
    raw_events = inbox.erase_bodies(_source_events(member))
    links = db.session.scalars(sa.select(Ownership).where(Ownership.member_id == member.id)).all()
    cars = len({o.vehicle_id for o in links if o.ended_on is None})
    vehicle_ids = {o.vehicle_id for o in links}
    for ownership in links:
        db.session.delete(ownership)
    now = utcnow()
    for token in db.session.scalars(sa.select(EnrollmentToken).where(EnrollmentToken.member_id == member.id)):
        token.vehicle_id = None
        token.expires_at = min(token.expires_at, now)
    db.session.execute(sa.delete(VehicleClaim).where(VehicleClaim.member_id == member.id))
    db.session.flush()
    still_linked = set(
        db.session.scalars(
            sa.select(Ownership.vehicle_id).where(Ownership.vehicle_id.in_(vehicle_ids), Ownership.ended_on.is_(None))
        )
    )
    for vehicle in db.session.scalars(sa.select(Vehicle).where(Vehicle.id.in_(vehicle_ids - still_linked))):
        vehicle.plate = None
    audit.record(
        actor=("member", member.id),
        action="member.consent_withdrawn",
        subject=("member", member.id),
        details={"erased": list(ERASED_ON_WITHDRAWAL), "cars_unlinked": cars, "raw_events_erased": raw_events},
    )
    events.publish(MemberErased(member.id, now))  # others erase what they hold (device hashes, addresses)
    db.session.flush()
