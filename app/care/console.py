"""Care in the console: the member-360 tabs (notifications with their delivery state, callback
tasks), resending a notification from the notifications tab, and the callback-task queue
(``/console/callbacks``: claim, note, close with an outcome). Callback tasks carry no dealer, so
the queue is HQ customer service's (agents and supervisors)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app.care import callbacks, operations
from app.care.models import CALLBACK_OUTCOMES
from app.console.registry import NavItem, Tab, TabContext, add_nav, add_tab
from app.console.session import console_view, current
from app.console.views import bp, member_action
from app.core.errors import AppError, ValidationFailed
from app.core.i18n import _, _l
from app.members.models import Member

PER_PAGE = 20
#: Who may resend a notification (as the back-office API) and who works the callback queue.
RESENDERS = ("agent", "supervisor", "operator")
CALLBACK_WORKERS = ("agent", "supervisor")
#: The queue's views: which status, and whether only the tasks the agent holds.
QUEUE_VIEWS = {
    "open": ("open", False),
    "mine": ("claimed", True),
    "claimed": ("claimed", False),
    "closed": ("closed", False),
}
QUEUE_VIEW_LABELS = {
    "open": _l("Open"),
    "mine": _l("Mine"),
    "claimed": _l("Claimed"),
    "closed": _l("Closed"),
}
OUTCOME_LABELS = {
    "resolved": _l("Reached, resolved"),
    "follow_up": _l("Reached, needs follow-up"),
    "unreachable": _l("Could not reach"),
    "declined": _l("Did not want to talk"),
}
REASON_LABELS = {"churn_risk": _l("Churn risk"), "low_rating": _l("Low benefit rating")}


def _pages(total: int) -> int:
    return max(1, -(-total // PER_PAGE))


def _notifications(context: TabContext) -> dict[str, Any]:
    page = context.page()
    rows, total = operations.history(context.member.id, page=page, per_page=PER_PAGE)
    return {
        "notifications": rows,
        "page": page,
        "pages": _pages(total),
        "total": total,
        "may_resend": context.operator.role in RESENDERS,
        "resendable": operations.RESENDABLE,
    }


def _callback_tasks(context: TabContext) -> dict[str, Any]:
    page = context.page()
    rows, total = callbacks.tasks_of(context.member.id, page=page, per_page=PER_PAGE)
    return {"tasks": rows, "page": page, "pages": _pages(total), "total": total, "reasons": REASON_LABELS}


@bp.route("/members/<member_no>/notifications/<id:notification_id>/resend", methods=["POST"])
@console_view(*RESENDERS, scope="member")
def resend_notification(member_no: str, notification_id: int) -> Any:
    """Send one of the member's notifications again, due now (consent and quiet hours still apply)."""

    def run(found: Member) -> str:
        operations.resend(
            notification_id, actor=("staff", current().actor), reason=request.form.get("reason", ""), member_id=found.id
        )
        return _("The notification is sent again.")

    return member_action(member_no, "notifications", "console: resend notification", run)


# --- the callback-task queue ------------------------------------------------------------------


def _agent() -> callbacks.Agent:
    operator = current()
    return callbacks.Agent(operator.id, operator.actor, operator.role == "supervisor")


def _queue(view: str, *, status: int = 200, **extra: Any) -> tuple[str, int]:
    task_status, mine = QUEUE_VIEWS[view]
    page_arg = request.args.get("page", "1")
    page = max(1, min(int(page_arg), 10_000)) if page_arg.isdigit() else 1
    rows, total = callbacks.listing(task_status, page=page, per_page=PER_PAGE, agent=_agent(), mine=mine)
    page_html = render_template(
        "console/callbacks.html",
        tasks=rows,
        notes=callbacks.notes_of([row["id"] for row in rows]),
        view=view,
        views=QUEUE_VIEW_LABELS,
        outcomes=OUTCOME_LABELS,
        reasons=REASON_LABELS,
        page=page,
        pages=_pages(total),
        total=total,
        form=request.form,
        **extra,
    )
    return page_html, status


@bp.route("/callbacks")
@console_view(*CALLBACK_WORKERS, scope="queue")
def callback_queue() -> Any:
    """Callback tasks, oldest first: open ones to claim, mine to work, claimed by anyone, closed."""
    view = request.args.get("view", "open")
    return _queue(view if view in QUEUE_VIEWS else "open")


def _work(task_id: int, action: Any, *, done: str, failed: str) -> Any:
    """Run one step on a task, then show the ``done`` view; a refusal re-renders the view the form
    came from (else ``failed``, where the task is) with the message and its status."""
    view = request.form.get("view", failed)
    view = view if view in QUEUE_VIEWS else failed
    try:
        message = action()
    except ValidationFailed as error:
        return _queue(view, status=error.status, errors=error.fields, failed_task=task_id)
    except AppError as error:
        return _queue(view, status=error.status, problem=error.message, failed_task=task_id)
    flash(message)
    return redirect(url_for("console.callback_queue", view=done))


@bp.route("/callbacks/<id:task_id>/claim", methods=["POST"])
@console_view(*CALLBACK_WORKERS, scope="queue")
def claim_callback(task_id: int) -> Response | tuple[str, int]:
    """Take an open task: when two agents click at once, one gets it and the other is told."""

    def run() -> str:
        callbacks.claim(task_id, _agent())
        return _("The callback task is yours.")

    return _work(task_id, run, done="mine", failed="open")


@bp.route("/callbacks/<id:task_id>/notes", methods=["POST"])
@console_view(*CALLBACK_WORKERS, scope="queue")
def note_callback(task_id: int) -> Response | tuple[str, int]:
    def run() -> str:
        callbacks.add_note(task_id, request.form.get("body", ""), _agent())
        return _("Note added.")

    return _work(task_id, run, done="mine", failed="mine")


@bp.route("/callbacks/<id:task_id>/close", methods=["POST"])
@console_view(*CALLBACK_WORKERS, scope="queue")
def close_callback(task_id: int) -> Response | tuple[str, int]:
    def run() -> str:
        outcome = request.form.get("outcome", "")
        callbacks.close(task_id, request.form.get("note", ""), _agent(), outcome=outcome)
        return _("The callback task is closed: %(outcome)s.", outcome=OUTCOME_LABELS.get(outcome, outcome))

    return _work(task_id, run, done="closed", failed="mine")


def register_tabs() -> None:
    """Notifications for everyone who sees the member; callback tasks are customer service's work."""
    assert set(OUTCOME_LABELS) == set(CALLBACK_OUTCOMES)
    add_tab(Tab("notifications", _l("Notifications"), "console/tabs/notifications.html", _notifications, order=60))
    add_tab(
        Tab(
            "callbacks",
            _l("Callback tasks"),
            "console/tabs/callbacks.html",
            _callback_tasks,
            roles=("agent", "supervisor", "operator"),
            order=85,
        )
    )
    add_nav(NavItem("console.callback_queue", _l("Callback tasks"), roles=CALLBACK_WORKERS, order=25))
