"""Deduction at the dealer (积分抵扣): a member pays part of a bill with points at the counter."""

from __future__ import annotations

from dataclasses import dataclass

from app.core import audit
from app.core.db import db
from app.core.errors import Conflict, ValidationFailed
from app.core.i18n import _l
from app.dealers.models import Dealer
from app.dealers.services import dealer_by_code
from app.operators.models import Operator
from app.points import ledger, queries


class MemberCannotRedeem(Conflict):
    code = "member_cannot_redeem"
    default_message = _l("This membership cannot redeem points right now.")


@dataclass(frozen=True)
class Deduction:
    posting: ledger.Posting
    available: int  # the balance after the deduction


def deducting_dealer(operator: Operator, dealer_code: str | None) -> Dealer:
    """A dealer manager deducts at their own dealer; HQ names the dealer."""
    if operator.role == "dealer_manager":
        dealer = db.session.get(Dealer, operator.dealer_id)
    else:
        dealer = dealer_by_code(dealer_code or "")
    if dealer is None:
        raise ValidationFailed(fields={"dealer_code": [_l("Unknown dealer code.")]})
    return dealer


def deduct_at_dealer(
    member_id: int, *, member_status: str, points: int, dealer: Dealer, request_id: str, purpose: str, actor: str
) -> Deduction:
    """Spend points at ``dealer`` once per ``request_id`` (a double tap returns the first result)."""
    if member_status != "active":
        raise MemberCannotRedeem(details={"status": member_status})
    posting = ledger.spend(
        member_id,
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
            subject=("member", member_id),
            details={"points": points, "dealer": dealer.code, "purpose": purpose},
        )
    return Deduction(posting, queries.balance(member_id).available)
