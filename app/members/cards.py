"""The member card: one read model of a member for agents, advisors and the CLI.

Personal data is masked unless the caller reveals it with a reason; every read is audited.
"""

from __future__ import annotations

from typing import Any

from app.core import audit
from app.core.db import db
from app.dealers.models import Dealer, Staff
from app.members import profile, services
from app.members.identifiers import mask_name, mask_phone
from app.members.models import Member


def read_member(query: str, *, actor: tuple[str, str | int], reason: str | None, reveal: bool = False) -> Member | None:
    """Look a member up by member or mobile number and audit the read (even a miss)."""
    member = services.find_member(query)
    audit.record(
        actor=actor,
        action="member.revealed" if reveal else "member.read",
        subject=("member", member.id if member else "-"),
        reason=reason,
        details=None if member else {"miss": True},
    )
    return member


def member_card(member: Member, *, reveal: bool = False) -> dict[str, Any]:
    dealer = db.session.get(Dealer, member.enrolling_dealer_id) if member.enrolling_dealer_id else None
    preferred = profile.preferred_dealer(member)
    advisor = db.session.get(Staff, member.enrolling_staff_id) if member.enrolling_staff_id else None
    open_token = services.open_enrollment_token(member)
    consent = services.consent_state(member)
    return {
        "member_no": member.member_no,
        "status": member.status,
        "name": member.name if reveal else mask_name(member.name),
        "phone": member.phone if reveal else mask_phone(member.phone),
        "birthday": (member.birthday.isoformat() if member.birthday else None) if reveal else None,
        "city": member.city,
        "customer_type": member.customer_type,
        "enrollment_channel": member.enrollment_channel,
        "enrolled_at": member.enrolled_at.isoformat(),
        "dealer": dealer.code + " " + dealer.name if dealer else None,
        "preferred_dealer": preferred.code + " " + preferred.name if preferred else None,
        "advisor": advisor.staff_code + " " + advisor.name if advisor else None,
        "consent": {"policy_version": consent.policy_version, **consent.purposes},
        "vehicles": [
            {
                "vin": o.vehicle.vin,
                "model": o.vehicle.model_name,
                "plate": o.vehicle.plate,
                "role": o.role,
                "since": o.started_on.isoformat(),
            }
            for o in member.ownerships
            if o.ended_on is None
        ],
        # The token itself is a bearer secret kept only as a hash: its QR comes from
        # `flask wechat order-qr` or the back office, which issue a fresh one.
        "order_enrollment_open": open_token is not None,
    }
