"""Who may see which member: dealer staff only see their own dealer's members (SPEC §12).

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
from app.members.models import EnrollmentToken, Member, Ownership
from app.operators.access import may_act_for_dealer
from app.operators.models import Operator


def visible_to(operator: Operator, member: Member) -> bool:
    if operator.role != "dealer_manager":
        return True
    if member.enrolling_dealer_id == operator.dealer_id:
        return True
    return bool(
        db.session.scalar(
            sa.select(
                sa.exists().where(Ownership.member_id == member.id, Ownership.credited_dealer_id == operator.dealer_id)
            )
        )
    )


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


def member_for_operator(operator: Operator, member_no: str, *, reason: str | None) -> Member:
    """The member by member number (never a phone: paths reach access logs), if this operator may
    see them; 404 alike for a miss and another dealer's member. The read is audited either way."""
    member = services.find_by_member_no(member_no) if is_member_number(member_no) else None
    return _checked_read(operator, member, reason=reason, query=member_no if is_member_number(member_no) else None)


def member_by_phone_for_operator(operator: Operator, phone: str, *, reason: str) -> Member:
    """The member holding this mobile number (from a request body), on the same terms."""
    return _checked_read(operator, services.find_by_phone(phone), reason=reason, query=None)


def _checked_read(operator: Operator, member: Member | None, *, reason: str | None, query: str | None) -> Member:
    if member is None or not visible_to(operator, member):
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
