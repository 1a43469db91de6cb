"""Back office: the customer-service callback tasks care opens (churn-risk win-back calls), a
member's notification history (audited read), resending one notification (audited), and delivery
rates per kind and channel."""

from __future__ import annotations

import datetime as dt
from typing import Any

from app.care import callbacks, operations
from app.care.schemas import (
    CallbackCloseArgs,
    CallbackListArgs,
    CallbackPageSchema,
    CallbackTaskSchema,
    NotificationHistoryArgs,
    NotificationPageSchema,
    NotificationSchema,
    RatesArgs,
    RateSchema,
    ResendArgs,
)
from app.core.clock import business_day_start, business_today
from app.core.http import Blueprint
from app.core.schemas import page_of
from app.members.access import member_for_operator
from app.operators.auth import current_operator, require_operator

blp = Blueprint(
    "cs_care", __name__, url_prefix="/api/v1/cs", description="Back office: callback tasks and member notifications"
)

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
    """Close your task with what came of the call and its outcome (a supervisor may close anyone's)."""
    return callbacks.close(task_id, args["note"], _agent(), outcome=args["outcome"])


@blp.route("/members/<member_no>/notifications")
@blp.doc(security=BEARER)
@blp.arguments(NotificationHistoryArgs, location="query")
@blp.response(200, NotificationPageSchema)
@require_operator("agent", "supervisor", "dealer_manager", "operator")
def member_notifications(args: dict[str, Any], member_no: str) -> dict[str, Any]:
    """What the member was told, on which channel, and what became of it; newest first."""
    member = member_for_operator(current_operator(), member_no, reason=args.get("reason"))
    items, total = operations.history(member.id, page=args["page"], per_page=args["per_page"])
    return page_of(items, page=args["page"], per_page=args["per_page"], total=total)


@blp.route("/notifications/<id:notification_id>/resend", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ResendArgs)
@blp.response(201, NotificationSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@require_operator("agent", "supervisor", "operator")
def resend(args: dict[str, Any], notification_id: int) -> Any:
    """Send a finished notification again, due now (consent and opt-out still apply). Audited."""
    operator = current_operator()
    return operations.resend(notification_id, actor=("staff", operator.actor), reason=args["reason"])


@blp.route("/notifications/rates")
@blp.doc(security=BEARER)
@blp.arguments(RatesArgs, location="query")
@blp.response(200, RateSchema(many=True))
@require_operator("supervisor", "operator")
def rates(args: dict[str, Any]) -> list[Any]:
    """Delivery rates per kind and channel for the notifications planned in these days."""
    until = args.get("until") or business_today()
    return operations.delivery_rates(business_day_start(args["since"]), business_day_start(until + dt.timedelta(1)))
