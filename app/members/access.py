"""Who may see which member (SPEC §12, PIPL; the rule in README "Who sees a member").

HQ roles (agent, supervisor, operator) see every member. A dealer's staff see a member only for
a relationship with their dealer, and only for what it justifies:

* **serving a current car** (``CAR_SERVICE``: points, deductions at the counter, the order QR):
  the dealer sold one of the member's current cars (or is credited with the sale) or serviced it
  since the member has had it. That is performing the contract (PIPL art. 13(2)): no extra consent.
* **the profile** (``PROFILE``: finding the member, name and contact details), and anything for a
  dealer whose only link is the enrollment (advisor or enrolling dealer): only while the member's
  ``dealer_sharing`` consent is granted. A withdrawal takes effect at the next read.

Every back-office read is audited, the refused and missed ones too (``audit.record_regardless``),
and "not yours" answers exactly like "no such member" (404).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from app.core import audit
from app.core.db import db
from app.core.errors import NotFound
from app.core.i18n import _l
from app.members import services
from app.members.identifiers import is_member_number
from app.members.models import EnrollmentToken, Member, Ownership, Vehicle, VehicleServicing
from app.operators.access import may_act_for_dealer
from app.operators.models import Operator

#: What a dealer reads a member for (see the module docstring).
CAR_SERVICE, PROFILE = "car_service", "profile"


def serves_a_current_car(member_id: int, dealer_id: int) -> bool:
    """The dealer sold (or is credited with) one of the member's current cars, or serviced it since
    the member has had it: the contract relationship."""
    serviced = sa.exists().where(
        VehicleServicing.vehicle_id == Ownership.vehicle_id,
        VehicleServicing.dealer_id == dealer_id,
        VehicleServicing.last_serviced_on >= Ownership.started_on,
    )
    sold = sa.exists().where(Vehicle.id == Ownership.vehicle_id, Vehicle.selling_dealer_id == dealer_id)
    return bool(
        db.session.scalar(
            sa.select(
                sa.exists().where(
                    Ownership.member_id == member_id,
                    Ownership.ended_on.is_(None),
                    sa.or_(Ownership.credited_dealer_id == dealer_id, sold, serviced),
                )
            )
        )
    )


def shares_with_dealers(member: Member) -> bool:
    """The member's ``dealer_sharing`` consent, as last recorded (read afresh: withdrawal is immediate)."""
    consent = services.consent_state(member)
    return consent.accepted_policy and consent.purposes.get("dealer_sharing", False)


def visible_to(operator: Operator, member: Member, *, purpose: str = CAR_SERVICE) -> bool:
    if operator.role != "dealer_manager":
        return True
    if operator.dealer_id is None:
        return False
    if serves_a_current_car(member.id, operator.dealer_id):
        return purpose == CAR_SERVICE or shares_with_dealers(member)
    return member.enrolling_dealer_id == operator.dealer_id and shares_with_dealers(member)


def _audit_refusal(
    operator: Operator, action: str, member: Member | None, query: str | None, reason: str | None
) -> None:
    """A refused or missed look-up, kept even though the 404 rolls the request back. The probed
    member number is kept for a miss; a phone number never is."""
    details: dict[str, Any] = {"refused": True} if member is not None else {"miss": True}
    if member is None and query is not None:
        details["member_no"] = query
    audit.record_regardless(
        actor=("staff", operator.actor),
        action=action,
        subject=("member", member.id if member else "-"),
        reason=reason,
        details=details,
    )


def _not_found() -> NotFound:
    """One answer for "no such member" and "not yours": a dealer cannot probe who is a member."""
    return NotFound(_l("No member has this number."))


def member_for_operator(
    operator: Operator, member_no: str, *, reason: str | None, purpose: str = CAR_SERVICE
) -> Member:
    """The member by member number (never a phone: paths reach access logs), if this operator may
    see them for ``purpose``; 404 alike for a miss and a member not theirs. Audited either way."""
    member = services.find_by_member_no(member_no) if is_member_number(member_no) else None
    query = member_no if is_member_number(member_no) else None
    return _checked_read(operator, member, reason=reason, query=query, purpose=purpose)


def member_by_phone_for_operator(operator: Operator, phone: str, *, reason: str) -> Member:
    """The member holding this mobile number (from a request body): a profile look-up, so a dealer
    finds only members who share their data with dealers."""
    return _checked_read(operator, services.find_by_phone(phone), reason=reason, query=None, purpose=PROFILE)


def _checked_read(
    operator: Operator, member: Member | None, *, reason: str | None, query: str | None, purpose: str
) -> Member:
    if member is None or not visible_to(operator, member, purpose=purpose):
        _audit_refusal(operator, "member.read", member, query, reason)
        raise _not_found()
    audit.record_regardless(
        actor=("staff", operator.actor), action="member.read", subject=("member", member.id), reason=reason
    )
    return member


def order_token_for_operator(operator: Operator, member_no: str, *, reason: str) -> EnrollmentToken:
    """A pre-enrolled buyer's open order enrollment token, for an operator of the selling dealer or
    HQ. Handing it over hands over the membership and its held points: audited with the reason."""
    member = services.find_by_member_no(member_no) if is_member_number(member_no) else None
    token = services.open_enrollment_token(member)
    allowed = member is not None and (
        visible_to(operator, member) or (token is not None and may_act_for_dealer(operator, token.dealer_id))
    )
    if not allowed:
        query = member_no if is_member_number(member_no) else None
        _audit_refusal(operator, "enrollment_token.refused", member, query, reason)
        raise _not_found()
    assert member is not None
    if token is None or not may_act_for_dealer(operator, token.dealer_id):
        _audit_refusal(operator, "enrollment_token.refused", member, None, reason)
        raise NotFound(_l("This member has no open enrollment code."))
    audit.record(
        actor=("staff", operator.actor),
        action="enrollment_token.issued",
        subject=("member", member.id),
        reason=reason,
        details={"token_id": token.id, "dealer_id": token.dealer_id},
    )
    return token
