"""Back office: a member's CRM sync state, and merge requests a supervisor approves."""

from __future__ import annotations

from typing import Any

from app.core.http import Blueprint
from app.crm import outbox
from app.crm.schemas import MergeDecisionSchema, MergeRequestSchema, MergeSchema, SyncStateSchema
from app.members import merging
from app.members.access import member_for_operator
from app.operators.auth import current_operator, require_operator
from app.points.schemas import ReadReasonArgs

blp = Blueprint("cs_crm", __name__, url_prefix="/api/v1/cs", description="Back office: CRM sync and member merges")

READERS = ("agent", "supervisor", "dealer_manager", "operator")
BEARER = [{"bearerAuth": []}]


@blp.route("/members/<member_no>/crm-sync")
@blp.doc(security=BEARER)
@blp.arguments(ReadReasonArgs, location="query")
@blp.response(200, SyncStateSchema)
@blp.alt_response(404, response="NOT_FOUND")
@require_operator(*READERS)
def crm_sync(args: dict[str, Any], member_no: str) -> dict[str, Any]:
    """When the CRM last received this member, and how many changes wait or are dead (audited read)."""
    member = member_for_operator(current_operator(), member_no, reason=args.get("reason"))
    return outbox.sync_state(member.id).as_dict()


@blp.route("/merges", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(MergeRequestSchema)
@blp.response(201, MergeSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@require_operator("agent", "supervisor", "operator")
def request_merge(args: dict[str, Any]) -> Any:
    """Ask for duplicates to be merged into a survivor; a supervisor approves (idempotent by request_id)."""
    return merging.request_merge(
        args["survivor_id"],
        args["merged_ids"],
        request_key=f"console:{args['request_id']}",
        requested_by=current_operator().actor,
        reason=args["reason"],
    )


@blp.route("/merges/<id:merge_id>/approve", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, MergeSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@require_operator("supervisor")
def approve_merge(merge_id: int) -> Any:
    """Apply a requested merge (a supervisor other than the requester)."""
    return merging.approve_merge(merge_id, supervisor=current_operator().actor)


@blp.route("/merges/<id:merge_id>/reject", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(MergeDecisionSchema)
@blp.response(200, MergeSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@require_operator("supervisor")
def reject_merge(args: dict[str, Any], merge_id: int) -> Any:
    return merging.reject_merge(merge_id, supervisor=current_operator().actor, reason=args.get("reason") or "-")
