"""Deduction at the dealer (积分抵扣): a member pays part of a bill with points at the counter."""

from __future__ import annotations

from app.core import audit
from app.core.errors import Conflict
from app.core.i18n import _l
from app.dealers.models import Dealer
from app.members.models import Member
from app.points import ledger


class MemberCannotRedeem(Conflict):
    code = "member_cannot_redeem"
    default_message = _l("This membership cannot redeem points right now.")


def deduct_at_dealer(
    member: Member, *, points: int, dealer: Dealer, request_id: str, purpose: str, actor: str
) -> ledger.Posting:
    """Spend points at ``dealer`` once per ``request_id`` (a double tap returns the first result)."""
    if member.status != "active":
        raise MemberCannotRedeem(details={"status": member.status})
    posting = ledger.spend(
        member.id,
        points,
        idempotency_key=f"deduct:{dealer.id}:{request_id}",
        source_type="dealer_deduction",
        source_ref=request_id,
        dealer_id=dealer.id,
        note=purpose,
        actor=actor,
    )
    if posting.new:
        audit.record(
            actor=("staff", actor),
            action="points.deducted",
            subject=("member", member.id),
            details={"points": points, "dealer": dealer.code, "purpose": purpose},
        )
    return posting
