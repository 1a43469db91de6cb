"""Back office for the mini-app's side: staff invites and verifying cars members claimed."""

from __future__ import annotations

from typing import Any

from app.core.http import Blueprint
from app.members import staff_mode, vehicle_claims
from app.members.access import member_by_phone_for_operator
from app.members.identifiers import mask_name, mask_phone
from app.members.schemas import ClaimSchema
from app.members.staff_schemas import (
    ClaimDecisionArgs,
    ClaimReviewSchema,
    InviteSchema,
    MemberFoundSchema,
    MemberSearchArgs,
)
from app.operators.access import staff_for
from app.operators.auth import current_operator, require_operator

blp = Blueprint(
    "cs_members",
    __name__,
    url_prefix="/api/v1/cs",
    description="Back office: member search, staff invites and vehicle claims",
)
BEARER = [{"bearerAuth": []}]


@blp.route("/staff/<staff_code>/invites", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(201, InviteSchema)
@require_operator("dealer_manager", "operator")
def invite(staff_code: str) -> dict[str, Any]:
    """A one-time code (valid 24 hours) the staff member enters in the mini-app to use staff mode."""
    operator = current_operator()
    staff = staff_for(operator, staff_code)
    code, expires = staff_mode.issue_invite(staff, actor=operator.actor)
    return {"staff_code": staff.staff_code, "invite_code": code, "expires_at": expires}


@blp.route("/members/search", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(MemberSearchArgs)
@blp.response(200, MemberFoundSchema)
@blp.alt_response(404, response="NOT_FOUND")
@require_operator("agent", "supervisor", "dealer_manager", "operator")
def search(args: dict[str, Any]) -> dict[str, Any]:
    """Find a member by mobile number (in the body, never in a URL); then use the member number.
    Another dealer's member is not found, like no member at all. Audited, misses too."""
    member = member_by_phone_for_operator(current_operator(), args["phone"], reason=args["reason"])
    return {
        "member_no": member.member_no,
        "status": member.status,
        "name": mask_name(member.name),
        "phone": mask_phone(member.phone),
    }


@blp.route("/vehicle-claims")
@blp.doc(security=BEARER)
@blp.response(200, ClaimReviewSchema(many=True))
@require_operator("agent", "supervisor", "dealer_manager", "operator")
def claims() -> list[Any]:
    """Cars members added that are waiting for verification: all for HQ; for a dealer, claims routed
    to it and claims on cars it sold or serviced. Competing claims on one car are counted."""
    return vehicle_claims.pending(_decider())


def _decider() -> vehicle_claims.Decider:
    operator = current_operator()
    return vehicle_claims.Decider(operator.actor, operator.role, operator.dealer_id)


def _decide(claim_id: int, approve: bool, args: dict[str, Any]) -> Any:
    details = {k: args[k] for k in ("model_code", "model_name", "model_year") if k in args}
    decider = _decider()
    return vehicle_claims.decide(
        claim_id, approve=approve, decider=decider, vehicle_details=details, note=args.get("note")
    )


@blp.route("/vehicle-claims/<id:claim_id>/approve", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ClaimDecisionArgs)
@blp.response(200, ClaimSchema)
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@require_operator("agent", "supervisor", "dealer_manager", "operator")
def approve(args: dict[str, Any], claim_id: int) -> Any:
    """The papers prove the car is the member's: link it (a resale ends the previous ownership)."""
    return _decide(claim_id, True, args)


@blp.route("/vehicle-claims/<id:claim_id>/reject", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ClaimDecisionArgs)
@blp.response(200, ClaimSchema)
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@require_operator("agent", "supervisor", "dealer_manager", "operator")
def reject(args: dict[str, Any], claim_id: int) -> Any:
    return _decide(claim_id, False, args)
