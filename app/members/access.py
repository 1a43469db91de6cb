"""Who may see which member: dealer staff only see their own dealer's members (SPEC §12)."""

from __future__ import annotations

import sqlalchemy as sa

from app.core.db import db
from app.core.errors import Forbidden, NotFound
from app.core.i18n import _l
from app.members import cards, services
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


def member_for_operator(operator: Operator, member_no: str, *, reason: str | None) -> Member:
    """The member by number, if this operator may see them; the read is audited either way."""
    member = cards.read_member(member_no, actor=("staff", operator.actor), reason=reason)
    if member is None:
        raise NotFound(_l("No member has this number."))
    if not visible_to(operator, member):
        raise Forbidden(_l("This member belongs to another dealer."))
    return member


def order_token_for_operator(operator: Operator, member_no: str) -> EnrollmentToken:
    """A pre-enrolled buyer's open order enrollment token, for an operator of the selling dealer or HQ."""
    token = services.open_enrollment_token(services.find_by_member_no(member_no))
    if token is None:
        raise NotFound(_l("This member has no open enrollment code."))
    if not may_act_for_dealer(operator, token.dealer_id):
        raise Forbidden()
    return token
