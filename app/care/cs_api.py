"""Back office: the customer-service callback tasks care opens (churn-risk win-back calls)."""

from __future__ import annotations

from typing import Any

from app.care import callbacks
from app.care.schemas import CallbackCloseArgs, CallbackListArgs, CallbackPageSchema, CallbackTaskSchema
from app.core.http import Blueprint
from app.core.schemas import page_of
from app.operators.auth import current_operator, require_operator

blp = Blueprint("cs_care", __name__, url_prefix="/api/v1/cs", description="Back office: callback tasks")

BEARER = [{"bearerAuth": []}]
AGENTS = ("agent", "supervisor")


def _agent() -> callbacks.Agent:
    operator = current_operator()
    return callbacks.Agent(operator.id, operator.actor, operator.role == "supervisor")


@blp.route("/callback-tasks")
@blp.doc(security=BEARER)
@blp.arguments(CallbackListArgs, location="query")
@blp.response(200, CallbackPageSchema)
@require_operator(*AGENTS)
def list_tasks(args: dict[str, Any]) -> dict[str, Any]:
    """Callback tasks by status (default open), oldest first. Audited."""
    items, total = callbacks.listing(args["status"], page=args["page"], per_page=args["per_page"], agent=_agent())
    return page_of(items, page=args["page"], per_page=args["per_page"], total=total)


@blp.route("/callback-tasks/<id:task_id>/claim", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, CallbackTaskSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@require_operator(*AGENTS)
def claim_task(task_id: int) -> Any:
    """Take an open task (one agent per task)."""
    return callbacks.claim(task_id, _agent())


@blp.route("/callback-tasks/<id:task_id>/close", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(CallbackCloseArgs)
@blp.response(200, CallbackTaskSchema)
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@require_operator(*AGENTS)
def close_task(args: dict[str, Any], task_id: int) -> Any:
    """Close your task with what came of the call (a supervisor may close anyone's)."""
    return callbacks.close(task_id, args["note"], _agent())
