"""rq-dashboard under ``/console/jobs``, for signed-in operators (role ``operator``) only.

rq-dashboard is a Flask blueprint without authentication of its own. It is mounted on the app
with the console's session in front of it: no session → the sign-in page; another role → 403.
Its own per-request hook, which would open a new Redis connection from a URL for every request,
is replaced by one handing it the app's RQ connection (``extensions.rq_connection``), so it sees
exactly the queues the workers use, also the in-process Redis of ``make run``.

Its buttons (requeue, delete, empty a queue) post by XHR without the console's CSRF token: a
post is accepted only from this origin (``Origin``, else ``Referer``), on top of the session
cookie's ``SameSite=Lax``; each is audited. Its one state-changing GET (requeue all) is refused.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import rq_dashboard
from flask import Flask, current_app, render_template, request, session
from werkzeug.wrappers import Response

from app.console import views
from app.console.session import current, load_operator
from app.core import audit
from app.core.i18n import _
from app.extensions import rq_connection

URL_PREFIX = "/console/jobs"
ROLE = "operator"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
#: rq-dashboard also requeues a queue's failed jobs on a GET (its page posts): a link from another
#: site would do it with the operator's cookie, so only the post is let through.
_CHANGES_ON_GET = {"rq_dashboard.requeue_all"}
#: What its pages fetch on their own every few seconds: not a click, so not activity that keeps
#: the console session from its idle timeout.
_POLLS = {"rq_dashboard.list_queues", "rq_dashboard.list_jobs", "rq_dashboard.list_workers", "rq_dashboard.job_info"}


def _same_origin() -> bool:
    source = request.headers.get("Origin") or request.headers.get("Referer") or ""
    return bool(source) and urlsplit(source).netloc == request.host


def _refuse(message: str) -> tuple[str, int]:
    return render_template("console/error.html", message=message), 403


def guard() -> Any:
    """Before every rq-dashboard request: a console session of an operator, the app's connection."""
    last_click = session.get("seen")
    signed_out = load_operator()
    if signed_out is not None:
        return signed_out
    if request.endpoint in _POLLS and last_click is not None:
        session["seen"] = last_click
    if current().role != ROLE:
        return _refuse(_("The job dashboard is for program operators."))
    if request.endpoint in _CHANGES_ON_GET and request.method != "POST":
        return _refuse(_("This form expired or did not come from the console. Reload the page and try again."))
    if request.method not in _SAFE_METHODS:
        if not _same_origin():
            return _refuse(_("This form expired or did not come from the console. Reload the page and try again."))
        audit.record(
            actor=("staff", current().actor),
            action="jobs.changed",
            subject=("rq", request.path.removeprefix(URL_PREFIX)[:120]),
        )
    current_app.redis_conn = rq_connection()  # type: ignore[attr-defined]  # what rq-dashboard reads
    return None


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """Mount rq-dashboard; its own before-request hook is replaced by ``guard`` (this app only)."""
    app.config.setdefault("RQ_DASHBOARD_POLL_INTERVAL", 5000)
    # Shown in its instance picker: the app's connection is what it uses (``guard``).
    app.config.setdefault("RQ_DASHBOARD_REDIS_URL", ("app RQ connection",))
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=URL_PREFIX)
    app.before_request_funcs["rq_dashboard"] = [guard]
    app.after_request_funcs.setdefault("rq_dashboard", []).append(_no_store)
    # The refusal page is the console's own template: it needs the console's template globals.
    app.template_context_processors.setdefault("rq_dashboard", []).append(views.console_globals)
