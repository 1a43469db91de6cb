"""What a customer-service agent or dealer manager does with a member record in the console:
look members up, reveal personal data with a reason, read who looked at the record.

Lookups are scoped by the rule of ``members/access.py`` (README "Who sees a member"): finding a
person by phone or WeChat openid is a *profile* look-up; by member number, VIN or plate the
operator has the car or the card in front of them (*car service*). Not by name: names are
encrypted without a blind index (ARCHITECTURE "Data and invariants"), so an exact match would
mean decrypting every member, and a prefix index would leak names. Every look-up is audited, a
miss and a refusal too, and the two look alike to the operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.core import audit, tunables
from app.core.db import db
from app.core.errors import NotFound, ValidationFailed
from app.core.i18n import _l
from app.core.models import AuditEntry
from app.members import services
from app.members.access import CAR_SERVICE, PROFILE, visible_to
from app.members.identifiers import is_member_number, normalize_cn_mobile, normalize_vin
from app.members.models import Consent, Member, Ownership, Vehicle, WechatIdentity, plate_index
from app.operators.models import Operator

#: What one may look a member up by, and what a dealer reads the member for when doing so.
LOOKUP_PURPOSES = {
    "phone": PROFILE,
    "member_no": CAR_SERVICE,
    "vin": CAR_SERVICE,
    "plate": CAR_SERVICE,
    "openid": PROFILE,
}
LOOKUP_KINDS = tuple(LOOKUP_PURPOSES)
REVEAL_REASONS = tunables.define(
    "console.reveal_reasons",
    ["caller_verification", "complaint_handling", "callback_request", "data_correction", "legal_request"],
    "Reasons an operator may give to reveal a member's personal data",
)
NOTE_LIMIT = 200
PLATE_LIMIT = 16
OPENID_LIMIT = 64


QUERY_LIMIT = 64


def _normalized(kind: str, query: str) -> str:
    query = (query or "").strip()
    if len(query) > QUERY_LIMIT:
        raise ValidationFailed(fields={"query": [_l("At most 64 characters.")]})
    invalid = {
        "phone": (normalize_cn_mobile(query) is None, _l("Enter an 11-digit mainland mobile number.")),
        "member_no": (not is_member_number(query.replace(" ", "")), _l("Not a valid member number.")),
        "vin": (len(normalize_vin(query)) != 17, _l("A VIN has 17 characters.")),
        "plate": (not 2 <= len(query.replace(" ", "")) <= PLATE_LIMIT, _l("Enter the full plate number.")),
        "openid": (not 1 <= len(query) <= OPENID_LIMIT, _l("Enter the full openid.")),
    }
    if kind not in invalid:
        raise ValidationFailed(fields={"kind": [_l("Unknown kind of look-up.")]})
    bad, message = invalid[kind]
    if bad:
        raise ValidationFailed(fields={"query": [message]})
    return query.replace(" ", "") if kind in ("member_no", "plate") else query


def _current_holders(vehicles: sa.Select) -> list[Member]:
    return list(
        db.session.scalars(
            sa.select(Member)
            .join(Ownership, Ownership.member_id == Member.id)
            .where(Ownership.vehicle_id.in_(vehicles), Ownership.ended_on.is_(None))
            .order_by(Member.id)
            .distinct()
        )
    )


def _candidates(kind: str, query: str) -> list[Member]:
    if kind == "phone":
        found = services.find_by_phone(query)
        return [found] if found else []
    if kind == "member_no":
        found = services.find_by_member_no(query)
        return [found] if found else []
    if kind == "vin":
        vehicle = services.vehicle_by_vin(normalize_vin(query))
        return _current_holders(sa.select(Vehicle.id).where(Vehicle.id == vehicle.id)) if vehicle else []
    if kind == "plate":
        return _current_holders(sa.select(Vehicle.id).where(Vehicle.plate_index == plate_index(query)))
    return list(
        db.session.scalars(
            sa.select(Member)
            .join(WechatIdentity, WechatIdentity.member_id == Member.id)
            .where(WechatIdentity.openid == query)
            .distinct()
        )
    )


def search(operator: Operator, kind: str, query: str) -> list[Member]:
    """The members this operator may see that match; each hit audited as a read, a miss or a
    refusal audited in a row that outlives the request (the query itself is never stored)."""
    query = _normalized(kind, query)
    purpose = LOOKUP_PURPOSES[kind]
    found = _candidates(kind, query)
    visible = [member for member in found if visible_to(operator, member, purpose=purpose)]
    for member in visible:
        audit.record_regardless(
            actor=("staff", operator.actor),
            action="member.lookup",
            subject=("member", member.id),
            details={"by": kind},
        )
    for member in found:
        if member not in visible:
            audit.record_regardless(
                actor=("staff", operator.actor),
                action="member.lookup",
                subject=("member", member.id),
                details={"by": kind, "refused": True},
            )
    if not found:
        audit.record_regardless(
            actor=("staff", operator.actor),
            action="member.lookup",
            subject=("member", "-"),
            details={"by": kind, "miss": True},
        )
    return visible


@dataclass(frozen=True)
class Reveal:
    reason_code: str
    note: str


def reveal(operator: Operator, member: Member, *, reason_code: str, note: str) -> Reveal:
    """Permission to show this member's personal data unmasked, once, for the reason given: a
    reason from the list plus free text, audited. A dealer needs the profile relationship."""
    fields: dict[str, list[Any]] = {}
    if reason_code not in REVEAL_REASONS.value():
        fields["reason_code"] = [_l("Choose a reason.")]
    note = (note or "").strip()
    if not note:
        fields["note"] = [_l("Say why you need to see it.")]
    elif len(note) > NOTE_LIMIT:
        fields["note"] = [_l("At most 200 characters.")]
    if fields:
        raise ValidationFailed(fields=fields)
    if not visible_to(operator, member, purpose=PROFILE):
        audit.record_regardless(
            actor=("staff", operator.actor),
            action="member.revealed",
            subject=("member", member.id),
            reason=f"{reason_code}: {note}",
            details={"refused": True},
        )
        raise NotFound(_l("No member has this number."))
    audit.record(
        actor=("staff", operator.actor),
        action="member.revealed",
        subject=("member", member.id),
        reason=f"{reason_code}: {note}",
    )
    return Reveal(reason_code, note)


def may_see_profile(operator: Operator, member: Member) -> bool:
    return visible_to(operator, member, purpose=PROFILE)


def audit_trail(member_id: int, *, page: int = 1, per_page: int = 20) -> tuple[list[AuditEntry], int]:
    """Who read or changed this member's record, newest first (the hash-chained audit log)."""
    where = (AuditEntry.subject_type == "member", AuditEntry.subject_id == str(member_id))
    total = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(*where))
    rows = db.session.scalars(
        sa.select(AuditEntry)
        .where(*where)
        .order_by(AuditEntry.occurred_at.desc(), AuditEntry.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    return list(rows), int(total or 0)


def consent_history(member_id: int) -> list[Consent]:
    """Every consent decision recorded for the member, newest first (append-only evidence)."""
    return list(
        db.session.scalars(sa.select(Consent).where(Consent.member_id == member_id).order_by(Consent.id.desc()))
    )
