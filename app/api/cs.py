"""Back-office API for customer service and dealers: sign-in, member points, adjustments,
deductions at the dealer, tiers at risk. Every member read is audited."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from app.api.cs_schemas import (
    AdjustmentArgs,
    AdjustmentSchema,
    AtRiskArgs,
    AtRiskSchema,
    DeductionArgs,
    DeductionSchema,
    HistoryArgs,
    HistoryPageSchema,
    MemberPointsSchema,
    ReadReasonArgs,
    SessionSchema,
    SignInArgs,
)
from app.core.db import db
from app.core.errors import Forbidden, NotFound, ValidationFailed
from app.core.http import Blueprint
from app.core.i18n import _l
from app.core.schemas import page_of
from app.dealers.models import Dealer
from app.dealers.services import dealer_by_code
from app.members import access, cards
from app.members.models import Member
from app.operators import auth
from app.operators.auth import current_operator, require_operator
from app.points import adjustments, deductions, queries
from app.tiers import policy as tiers

blp = Blueprint("cs", __name__, url_prefix="/api/v1/cs", description="Customer service and dealer back office")

READERS = ("agent", "supervisor", "dealer_manager", "operator")
BEARER = [{"bearerAuth": []}]


def _member(member_no: str, reason: str | None) -> Member:
    """The member by number, if this operator may see them; the read is audited either way."""
    operator = current_operator()
    member = cards.read_member(member_no, actor=("staff", operator.actor), reason=reason)
    if member is None:
        raise NotFound(_l("No member has this number."))
    if not access.visible_to(operator, member):
        raise Forbidden(_l("This member belongs to another dealer."))
    return member


@blp.route("/sessions", methods=["POST"])
@blp.arguments(SignInArgs)
@blp.response(201, SessionSchema)
@blp.alt_response(401, response="UNAUTHORIZED")
def sign_in(args: dict[str, Any]) -> dict[str, Any]:
    """Sign in with username and password; use the token as `Authorization: Bearer <token>`."""
    operator, token = auth.sign_in(args["username"], args["password"])
    return {
        "token": token,
        "expires_in": auth.TOKEN_HOURS.value() * 3600,
        "username": operator.username,
        "name": operator.name,
        "role": operator.role,
    }


@blp.route("/members/<member_no>/points")
@blp.doc(security=BEARER)
@blp.arguments(ReadReasonArgs, location="query")
@blp.response(200, MemberPointsSchema)
@require_operator(*READERS)
def member_points(args: dict[str, Any], member_no: str) -> dict[str, Any]:
    """Balance (available, pending, expiring in 30/90 days) and tier progress."""
    member = _member(member_no, args.get("reason"))
    balance = dataclasses.asdict(queries.balance(member.id))
    return {
        "balance": {"member_no": member.member_no, **balance},
        "tier": dataclasses.asdict(queries.tier_progress(member.id)),
    }


@blp.route("/members/<member_no>/points/history")
@blp.doc(security=BEARER)
@blp.arguments(HistoryArgs, location="query")
@blp.response(200, HistoryPageSchema)
@require_operator(*READERS)
def member_history(args: dict[str, Any], member_no: str) -> dict[str, Any]:
    """Ledger entries newest first, earnings with their lot and expiry."""
    member = _member(member_no, args.get("reason"))
    items, total = queries.history(
        member.id, page=args["page"], per_page=args["per_page"], currency=args.get("currency")
    )
    return page_of(items, page=args["page"], per_page=args["per_page"], total=total)


@blp.route("/members/<member_no>/adjustments", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(AdjustmentArgs)
@blp.response(201, AdjustmentSchema, description="Applied at once (within the threshold)")
@blp.alt_response(202, schema=AdjustmentSchema, description="Waiting for a supervisor", success=True)
@blp.alt_response(409, response="CONFLICT")
@require_operator("agent", "supervisor")
def adjust(args: dict[str, Any], member_no: str) -> tuple[Any, int]:
    """Adjust reward points with a reason code; above the threshold a supervisor must approve."""
    member = _member(member_no, f"adjustment: {args['reason_code']}")
    request, _created = adjustments.request_adjustment(
        member,
        points=args["points"],
        reason_code=args["reason_code"],
        note=args["note"],
        requested_by=current_operator().actor,
        request_id=args["request_id"],
    )
    return request, 201 if request.status == "applied" else 202


@blp.route("/adjustments/pending")
@blp.doc(security=BEARER)
@blp.response(200, AdjustmentSchema(many=True))
@require_operator("supervisor")
def pending_adjustments() -> list[Any]:
    return adjustments.pending()


def _decide(adjustment_id: int, approve: bool) -> Any:
    operator = current_operator()
    return adjustments.decide(adjustment_id, approve=approve, decided_by=operator.actor, decider_role=operator.role)


@blp.route("/adjustments/<id:adjustment_id>/approve", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, AdjustmentSchema)
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(409, response="CONFLICT")
@require_operator("supervisor")
def approve_adjustment(adjustment_id: int) -> Any:
    """Apply a pending adjustment (a supervisor other than the requester)."""
    return _decide(adjustment_id, True)


@blp.route("/adjustments/<id:adjustment_id>/reject", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, AdjustmentSchema)
@require_operator("supervisor")
def reject_adjustment(adjustment_id: int) -> Any:
    return _decide(adjustment_id, False)


def _deducting_dealer(args: dict[str, Any]) -> Dealer:
    operator = current_operator()
    if operator.role == "dealer_manager":
        return db.session.get(Dealer, operator.dealer_id)  # type: ignore[return-value]
    dealer = dealer_by_code(args.get("dealer_code") or "")
    if dealer is None:
        raise ValidationFailed(fields={"dealer_code": [_l("Unknown dealer code.")]})
    return dealer


@blp.route("/members/<member_no>/deductions", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(DeductionArgs)
@blp.response(201, DeductionSchema)
@blp.alt_response(409, response="CONFLICT")
@require_operator("dealer_manager", "operator")
def deduct(args: dict[str, Any], member_no: str) -> tuple[dict[str, Any], int]:
    """Pay part of a bill at the dealer with points; a repeated request id deducts once."""
    member = _member(member_no, f"deduction: {args['purpose']}")
    posting = deductions.deduct_at_dealer(
        member,
        points=args["points"],
        dealer=_deducting_dealer(args),
        request_id=args["request_id"],
        purpose=args["purpose"],
        actor=current_operator().actor,
    )
    available = queries.balance(member.id).available
    return {
        "entry_id": posting.id,
        "points": -posting.points,
        "available": available,
        "duplicate": not posting.new,
    }, 201


@blp.route("/tiers/at-risk")
@blp.doc(security=BEARER)
@blp.arguments(AtRiskArgs, location="query")
@blp.response(200, AtRiskSchema(many=True))
@require_operator("agent", "supervisor", "operator")
def tiers_at_risk(args: dict[str, Any]) -> list[dict[str, Any]]:
    """Members whose review is near and who would drop a tier without a qualifying activity."""
    states = tiers.at_risk(within_days=args["within_days"])
    member_ids = [s.member_id for s in states]
    numbers = dict(db.session.execute(sa.select(Member.id, Member.member_no).where(Member.id.in_(member_ids))).all())
    return [
        {
            "member_no": numbers.get(s.member_id),
            "tier": s.tier,
            "review_on": s.review_on,
            "last_qualifying_at": s.last_qualifying_at,
        }
        for s in states
    ]
