"""What a back-office operator may reach: dealer managers only their own dealer's staff."""

from __future__ import annotations

from app.core.errors import NotFound
from app.core.i18n import _l
from app.dealers.models import Staff
from app.dealers.services import active_staff
from app.operators.models import Operator


def staff_for(operator: Operator, staff_code: str) -> Staff:
    """The active staff member with this code, if the operator may act for them; else 404, the same
    answer for another dealer's staff as for no such staff (no probing other dealers' rosters)."""
    staff = active_staff(staff_code)
    if staff is None or not may_act_for_dealer(operator, staff.dealer_id):
        raise NotFound(_l("No active staff member has this code."))
    return staff


def may_act_for_dealer(operator: Operator, dealer_id: int | None) -> bool:
    """HQ roles act for every dealer; a dealer manager only for their own."""
    return operator.role != "dealer_manager" or operator.dealer_id == dealer_id
