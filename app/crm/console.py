"""The CRM in the console: the member's CRM sync tab, and merging duplicates: an agent files a
merge request from the member's *Merges* tab (the other member number, which one keeps its number,
a reason), a supervisor approves or rejects it in the queue (``/console/merges``), both members
shown masked side by side (``members/merge_review``). Like the back-office API (``crm/api.py``)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app.console.registry import NavItem, Tab, TabContext, add_nav, add_tab
from app.console.session import console_view, current
from app.console.views import bp, member_action
from app.core.errors import AppError, ValidationFailed
from app.core.i18n import _, _l
from app.crm import outbox
from app.members import merge_review, merging
from app.members.models import Member

#: Who files merge requests (as the API) and who decides them.
REQUESTERS = ("agent", "supervisor", "operator")
DECIDERS = ("supervisor",)
PER_PAGE = 10
MERGE_STATUSES = {"requested": _l("Waiting for approval"), "applied": _l("Merged"), "rejected": _l("Rejected")}


def _crm_sync(context: TabContext) -> dict[str, Any]:
    return {"state": outbox.sync_state(context.member.id)}


def _merges(context: TabContext) -> dict[str, Any]:
    return {"requests": merge_review.requests_of(context.member.id), "statuses": MERGE_STATUSES}


@bp.route("/members/<member_no>/merge-requests", methods=["POST"])
@console_view(*REQUESTERS, scope="member")
def request_merge(member_no: str) -> Any:
    """File a merge request for this member and another one; a supervisor decides."""

    def run(found: Member) -> str:
        filed = merge_review.file_request(
            current(),
            found,
            other_member_no=request.form.get("other_member_no", "")[:32],
            keep=request.form.get("keep", ""),
            reason=request.form.get("reason", ""),
            request_id=request.form.get("request_id", "")[:48] or uuid.uuid4().hex,
        )
        return _("Merge request %(id)s sent to a supervisor for approval.", id=filed.id)

    return member_action(member_no, "merges", "console: merge request", run)


def _queue(*, status: int = 200, **extra: Any) -> tuple[str, int]:
    page_arg = request.args.get("page", "1")
    page = max(1, min(int(page_arg), 10_000)) if page_arg.isdigit() else 1
    rows, total = merge_review.pending(current(), page=page, per_page=PER_PAGE)
    html = render_template(
        "console/merges.html", rows=rows, page=page, pages=max(1, -(-total // PER_PAGE)), form=request.form, **extra
    )
    return html, status


@bp.route("/merges")
@console_view(*DECIDERS, scope="queue")
def merge_queue() -> Any:
    """Merge requests waiting for a supervisor, oldest first, the members side by side (masked)."""
    return _queue()


def _decide(merge_id: int, decide: Any) -> Response | tuple[str, int]:
    try:
        message = decide()
    except ValidationFailed as error:
        return _queue(status=error.status, errors=error.fields, failed_merge=merge_id)
    except AppError as error:
        return _queue(status=error.status, problem=error.message, failed_merge=merge_id)
    flash(message)
    return redirect(url_for("console.merge_queue"))


@bp.route("/merges/<id:merge_id>/approve", methods=["POST"])
@console_view(*DECIDERS, scope="queue")
def approve_merge(merge_id: int) -> Response | tuple[str, int]:
    """Apply the merge now (not the requester; two supervisors at once apply it once)."""

    def run() -> str:
        merging.approve_merge(merge_id, supervisor=current().actor)
        return _("The members are merged.")

    return _decide(merge_id, run)


@bp.route("/merges/<id:merge_id>/reject", methods=["POST"])
@console_view(*DECIDERS, scope="queue")
def reject_merge(merge_id: int) -> Response | tuple[str, int]:
    def run() -> str:
        merge_review.reject(merge_id, supervisor=current().actor, reason=request.form.get("reason", ""))
        return _("Merge request rejected.")

    return _decide(merge_id, run)


def register_tabs() -> None:
    """Back-office plumbing: not shown to dealer managers."""
    add_tab(
        Tab(
            "crm",
            _l("CRM sync"),
            "console/tabs/crm.html",
            _crm_sync,
            roles=("agent", "supervisor", "operator"),
            order=90,
        )
    )
    add_tab(Tab("merges", _l("Merges"), "console/tabs/merges.html", _merges, roles=REQUESTERS, order=95))
    add_nav(NavItem("console.merge_queue", _l("Merge requests"), roles=DECIDERS, order=22))
