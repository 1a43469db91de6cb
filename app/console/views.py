"""The console's pages: parse the form, call one domain service, render. No queries here."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from app.complaints import services as complaints
from app.console import labels, registry
from app.console.registry import TabContext
from app.console.session import console_view, current, load_operator
from app.console.session import end as end_session
from app.console.session import start as start_session
from app.core.clock import BUSINESS_TZ, utcnow
from app.core.errors import AppError, ValidationFailed
from app.core.i18n import _, catalog_name
from app.members import freezing, service_desk, services
from app.members.access import CAR_SERVICE, member_for_operator
from app.members.models import Member
from app.operators import auth
from app.points import adjustments

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
csrf = CSRFProtect()


def _check_csrf() -> None:
    """Every form of the console carries the session's CSRF token (after the sign-in check)."""
    if request.method not in ("GET", "HEAD", "OPTIONS") and current_app.config.get("WTF_CSRF_ENABLED", True):
        csrf.protect()


def _refuse_nul() -> None:
    """A NUL character cannot be stored in PostgreSQL text: a clear 422 instead of a failed statement."""
    for source in (request.args, request.form):
        for name, value in source.items(multi=True):
            if "\x00" in value:
                raise ValidationFailed(fields={name: [_("Contains a character that is not allowed.")]})


bp.before_request(load_operator)
bp.before_request(_check_csrf)
bp.before_request(_refuse_nul)

#: Everything is served from this origin (vendored assets): no inline script, no framing.
_CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"


@bp.after_request
def _console_headers(response: Response) -> Response:
    """Pages carry personal data: never cached; a strict content policy."""
    response.headers["Cache-Control"] = "no-store"
    response.headers.setdefault("Content-Security-Policy", _CSP)
    return response


HQ = ("agent", "supervisor", "operator")
CUSTOMER_SERVICE = ("agent", "supervisor")
REPORT_DAYS = 30


def _safe_next(target: str | None) -> str:
    """Only a console path (no scheme, no //host): an open redirect would phish operators."""
    if target and target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("console.lookup")


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    """Username and password; throttled, locked out and audited by ``operators/auth``."""
    if request.method == "GET":
        return render_template("console/sign_in.html", why=request.args.get("why"), next=request.args.get("next"))
    username = request.form.get("username", "").strip()[:64]
    password = request.form.get("password", "")[:256]
    if not username or not password:
        errors = {name: [_("Required.")] for name in ("username", "password") if not request.form.get(name)}
        return render_template("console/sign_in.html", errors=errors, username=username), 422
    try:
        operator, token = auth.sign_in(username, password, ip=request.remote_addr or "-")
    except AppError as error:
        return render_template("console/sign_in.html", problem=error.message, username=username), error.status
    start_session(operator, token)
    return redirect(_safe_next(request.form.get("next")))


@bp.route("/sign-out", methods=["POST"])
def sign_out() -> Response:
    """Sign out (everywhere: the operator's other sessions and API tokens end too)."""
    if g.console_operator is not None:
        auth.sign_out(g.console_operator)
    end_session()
    return redirect(url_for("console.sign_in", why="signed_out"))


@bp.route("/")
@console_view(scope="lookup")
def lookup() -> Any:
    """Find members by phone, member number, VIN, plate or openid (scoped for dealer staff)."""
    kind, query = request.args.get("kind", "phone"), request.args.get("q", "")
    if not query:
        return render_template("console/lookup.html", kind=kind, query="", results=None)
    try:
        results = service_desk.search(current(), kind, query)
    except ValidationFailed as error:
        return render_template("console/lookup.html", kind=kind, query=query, results=None, errors=error.fields), 422
    if len(results) == 1:
        return redirect(url_for("console.member", member_no=results[0].member_no))
    return render_template("console/lookup.html", kind=kind, query=query, results=results)


def _member(member_no: str, reason: str) -> Member:
    """The member if this operator may see them (404 otherwise); the read is audited either way."""
    return member_for_operator(current(), member_no, reason=reason, purpose=CAR_SERVICE)


def _render_member(
    member: Member, tab_name: str, *, revealed: bool = False, status: int = 200, **extra: Any
) -> tuple[str, int]:
    tabs = registry.tabs_for(current())
    tab = next((t for t in tabs if t.name == tab_name), tabs[0])
    context = TabContext(operator=current(), member=member, revealed=revealed, args=request.args)
    body = tab.view(context)
    page = render_template(
        "console/member.html",
        member=member,
        tabs=tabs,
        tab=tab,
        body=body,
        revealed=revealed,
        form=request.form,
        new_request_id=uuid.uuid4().hex,
        **extra,
    )
    return page, status


@bp.route("/members/<member_no>")
@console_view(scope="member")
def member(member_no: str) -> Any:
    """The member 360: one tab at a time (``?tab=``), personal data masked."""
    tab = request.args.get("tab", "profile")[:32]
    found = _member(member_no, reason=f"console: member 360 ({tab})")
    return _render_member(found, tab)


@bp.route("/members/<member_no>/reveal", methods=["POST"])
@console_view(scope="member")
def reveal(member_no: str) -> Any:
    """Show personal data unmasked for this one page, with a reason (audited)."""
    found = _member(member_no, reason="console: reveal")
    tab = request.form.get("tab", "profile")
    try:
        service_desk.reveal(
            current(), found, reason_code=request.form.get("reason_code", ""), note=request.form.get("note", "")
        )
    except ValidationFailed as error:
        return _render_member(found, tab, status=error.status, errors=error.fields)
    return _render_member(found, tab, revealed=True)


def _act(member_no: str, tab: str, reason: str, action: Callable[[Member], str]) -> Any:
    """Run one member action; a refusal re-renders the tab with the message and its status."""
    found = _member(member_no, reason=reason)
    try:
        message = action(found)
    except ValidationFailed as error:
        return _render_member(found, tab, status=error.status, errors=error.fields)
    except AppError as error:
        return _render_member(found, tab, status=error.status, problem=error.message)
    flash(message)
    return redirect(url_for("console.member", member_no=found.member_no, tab=tab))


#: For the packages' console modules (``app/<package>/console.py``), which add their member actions
#: to this blueprint: the member as this operator may see them, and one action run on them.
visible_member = _member
member_action = _act


def _points(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValidationFailed(fields={"points": [_("Enter a whole number of points.")]}) from None
    if not -1_000_000 <= value <= 1_000_000:
        raise ValidationFailed(fields={"points": [_("At most 1,000,000 points either way.")]})
    return value


@bp.route("/members/<member_no>/adjustments", methods=["POST"])
@console_view(*CUSTOMER_SERVICE, scope="member")
def adjust(member_no: str) -> Any:
    """Adjust reward points; above the threshold the request waits in the supervisors' queue."""

    def run(found: Member) -> str:
        note = request.form.get("note", "").strip()
        if not note or len(note) > 255:
            raise ValidationFailed(fields={"note": [_("Give a note of at most 255 characters.")]})
        request_id = request.form.get("request_id", "")[:64] or uuid.uuid4().hex
        adjustment, _created = adjustments.request_adjustment(
            found.id,
            points=_points(request.form.get("points", "")),
            reason_code=request.form.get("reason_code", ""),
            note=note,
            requested_by=current().actor,
            request_id=request_id,
        )
        if adjustment.status == "applied":
            return _("Adjustment of %(points)s points applied.", points=adjustment.points)
        return _("Adjustment of %(points)s points sent to a supervisor for approval.", points=adjustment.points)

    return _act(member_no, "ledger", "console: points adjustment", run)


@bp.route("/members/<member_no>/freeze", methods=["POST"])
@console_view(*CUSTOMER_SERVICE, scope="member")
def freeze(member_no: str) -> Any:
    def run(found: Member) -> str:
        freezing.freeze(found.id, actor=current().actor, role=current().role, reason=request.form.get("reason", ""))
        return _("The membership is frozen.")

    return _act(member_no, "profile", "console: freeze", run)


@bp.route("/members/<member_no>/unfreeze", methods=["POST"])
@console_view(*CUSTOMER_SERVICE, scope="member")
def unfreeze(member_no: str) -> Any:
    def run(found: Member) -> str:
        change = freezing.unfreeze(
            found.id, actor=current().actor, role=current().role, reason=request.form.get("reason", "")
        )
        return _("The membership is active again; %(points)s held points released.", points=change.released_points)

    return _act(member_no, "profile", "console: unfreeze", run)


@bp.route("/members/<member_no>/complaints", methods=["POST"])
@console_view("agent", "supervisor", "dealer_manager", scope="member")
def log_complaint(member_no: str) -> Any:
    def run(found: Member) -> str:
        complaints.log_complaint(
            found.id,
            category=request.form.get("category", ""),
            description=request.form.get("description", ""),
            status=request.form.get("status", "open"),
            resolution=request.form.get("resolution"),
            actor=current().actor,
        )
        return _("Complaint logged.")

    return _act(member_no, "complaints", "console: complaint", run)


@bp.route("/members/<member_no>/complaints/<id:complaint_id>", methods=["POST"])
@console_view("agent", "supervisor", "dealer_manager", scope="member")
def update_complaint(member_no: str, complaint_id: int) -> Any:
    def run(found: Member) -> str:
        complaints.update_complaint(
            complaint_id,
            found.id,
            status=request.form.get("status", ""),
            resolution=request.form.get("resolution"),
            actor=current().actor,
        )
        return _("Complaint updated.")

    return _act(member_no, "complaints", "console: complaint", run)


@bp.route("/approvals")
@console_view("supervisor", scope="queue")
def approvals() -> Any:
    """Adjustments above the threshold waiting for a second person."""
    waiting = adjustments.pending()
    numbers = services.member_numbers({a.member_id for a in waiting})
    return render_template("console/approvals.html", waiting=waiting, numbers=numbers)


@bp.route("/approvals/<id:adjustment_id>", methods=["POST"])
@console_view("supervisor", scope="queue")
def decide(adjustment_id: int) -> Any:
    """Approve (apply) or reject; the approver must not be the requester (the service refuses)."""
    approve = request.form.get("decision") == "approve"
    try:
        decided = adjustments.decide(
            adjustment_id, approve=approve, decided_by=current().actor, decider_role=current().role
        )
    except AppError as error:
        waiting = adjustments.pending()
        numbers = services.member_numbers({a.member_id for a in waiting})
        page = render_template("console/approvals.html", waiting=waiting, numbers=numbers, problem=error.message)
        return page, error.status
    flash(_("Adjustment approved and applied.") if decided.status == "applied" else _("Adjustment rejected."))
    return redirect(url_for("console.approvals"))


@bp.route("/reports/complaints")
@console_view(*HQ, scope="queue")
def complaint_report() -> Any:
    """The ten most frequent complaint categories of the last 30 days."""
    days = request.args.get("days", str(REPORT_DAYS))
    days_back = int(days) if days.isdigit() and 1 <= int(days) <= 366 else REPORT_DAYS
    rows = complaints.top_categories(since=utcnow() - dt.timedelta(days=days_back))
    return render_template("console/complaint_report.html", rows=rows, days=days_back)


# --- errors and template helpers -------------------------------------------------------------


@bp.errorhandler(CSRFError)
def _csrf_refused(error: CSRFError) -> tuple[str, int]:
    return render_template(
        "console/error.html",
        message=_("This form expired or did not come from the console. Reload the page and try again."),
    ), 400


@bp.errorhandler(AppError)
def _app_error(error: AppError) -> tuple[str, int]:
    return render_template("console/error.html", message=error.message), error.status


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> tuple[str, int]:
    return render_template("console/error.html", message=error.description), error.code or 500


@bp.app_template_filter("label")
def _label(code: str | None, table: str) -> Any:
    return labels.label(getattr(labels, table), code)


@bp.app_template_filter("when")
def _when(value: dt.datetime | dt.date | None) -> str:
    """Times in Beijing time (stored in UTC)."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M")
    return value.isoformat()


def _in_language(code: str) -> str:
    """This page in another language (a page answering a form goes to the look-up instead)."""
    if request.method == "GET" and request.endpoint and request.view_args is not None:
        return url_for(request.endpoint, **request.view_args, **{**request.args.to_dict(), "lang": code})
    return url_for("console.lookup", lang=code)


@bp.context_processor
def console_globals() -> dict[str, Any]:
    operator = g.get("console_operator")
    return {
        "in_language": _in_language,
        "operator": operator,
        "nav": registry.nav_for(operator) if operator else [],
        "labels": labels,
        "locale": catalog_name(get_locale()),
    }
