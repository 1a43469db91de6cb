"""Back office for customer service and dealers: a member's points, adjustments, deductions at the
dealer. Every member read is audited."""

from __future__ import annotations

import dataclasses
from typing import Any

from app.core.http import Blueprint
from app.core.schemas import page_of
from app.members.access import member_for_operator
from app.operators.auth import current_operator, require_operator
from app.points import adjustments, deductions, queries
from app.points.schemas import (
    AdjustmentArgs,
    AdjustmentSchema,
    DeductionArgs,
    DeductionSchema,
    HistoryArgs,
    HistoryPageSchema,
    MemberPointsSchema,
    ReadReasonArgs,
)

blp = Blueprint("cs_points", __name__, url_prefix="/api/v1/cs", description="Back office: points")

READERS = ("agent", "supervisor", "dealer_manager", "operator")
BEARER = [{"bearerAuth": []}]


@blp.route("/members/<member_no>/points")
@blp.doc(security=BEARER)
@blp.arguments(ReadReasonArgs, location="query")
@blp.response(200, MemberPointsSchema)
@require_operator(*READERS)
def member_points(args: dict[str, Any], member_no: str) -> dict[str, Any]:
    """Balance (available, pending, expiring in 30/90 days) and tier progress."""
    member = member_for_operator(current_operator(), member_no, reason=args.get("reason"))
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
    member = member_for_operator(current_operator(), member_no, reason=args.get("reason"))
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
    operator = current_operator()
    member = member_for_operator(operator, member_no, reason=f"adjustment: {args['reason_code']}")
    request, _created = adjustments.request_adjustment(
        member.id,
        points=args["points"],
        reason_code=args["reason_code"],
        note=args["note"],
        requested_by=operator.actor,
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


@blp.route("/members/<member_no>/deductions", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(DeductionArgs)
@blp.response(201, DeductionSchema)
@blp.alt_response(409, response="CONFLICT")
@require_operator("dealer_manager", "operator")
def deduct(args: dict[str, Any], member_no: str) -> tuple[dict[str, Any], int]:
    """Pay part of a bill at the dealer with points; a repeated request id deducts once."""
    operator = current_operator()
    member = member_for_operator(operator, member_no, reason=f"deduction: {args['purpose']}")
    result = deductions.deduct_at_dealer(
        member.id,
        member_status=member.status,
        points=args["points"],
        dealer=deductions.deducting_dealer(operator, args.get("dealer_code")),
        request_id=args["request_id"],
        purpose=args["purpose"],
        actor=operator.actor,
    )
    return {
        "entry_id": result.posting.id,
        "points": -result.posting.points,
        "available": result.available,
        "duplicate": not result.posting.new,
    }, 201
