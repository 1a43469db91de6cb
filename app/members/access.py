"""Who may see which member: dealer staff only see their own dealer's members (SPEC §12)."""

from __future__ import annotations

import sqlalchemy as sa

from app.core.db import db
from app.members.models import Member, Ownership
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
