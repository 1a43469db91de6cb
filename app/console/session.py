"""Console sign-in on a session cookie, on top of the back-office accounts (``operators/auth``).

The cookie (Flask's signed session) holds the operator's signed token from ``auth.sign_in``, so
the password check, lockout, throttle, audit and revocation (sign-out everywhere, deactivation,
password reset bump ``token_version``) are the back office's own. An idle session ends after
``console.idle_minutes``. Every view declares who may use it and how it is scoped (``console_view``);
a test walks the URL map and fails for a view that does not.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from flask import g, redirect, request, session, url_for
from flask_babel import refresh
from werkzeug.wrappers import Response

from app.core import tunables
from app.core.errors import AppError, Forbidden
from app.core.i18n import SUPPORTED_LOCALES, use_member_locale
from app.operators import auth
from app.operators.models import ROLES, Operator

IDLE_MINUTES = tunables.define("console.idle_minutes", 30, "Minutes without a click after which a console session ends")
#: Endpoints anyone may open (the rest need a signed-in operator).
PUBLIC_ENDPOINTS = {"console.sign_in", "console.sign_out", "console.static"}
#: How a view is scoped: ``member`` resolves the member through the visibility rule (404 and an
#: audited refusal when not visible; the read audited), ``lookup`` filters results by that rule,
#: ``queue`` lists work for HQ roles only, ``operator`` shows nothing about members, ``dealer``
#: shows figures limited to the operator's dealer for dealer staff (the dashboard).
SCOPES = ("member", "lookup", "queue", "operator", "dealer")


def _fresh(locale: str | None) -> None:
    """Empty the session but for the language; the CSRF token of the old session goes with it."""
    session.clear()
    g.pop("csrf_token", None)  # Flask-WTF caches the token of the request on g
    if locale:
        session["locale"] = locale


def start(operator: Operator, token: str) -> None:
    """A fresh session (nothing carried over from before sign-in) for this operator."""
    _fresh(session.get("locale"))
    session.update(token=token, seen=int(time.time()), operator=operator.username)
    session.permanent = False


def end() -> None:
    _fresh(session.get("locale"))


def current() -> Operator:
    return g.console_operator


def load_operator() -> Response | None:
    """Before every console request: the locale, then the operator (or a redirect to sign-in)."""
    g.pop("csrf_token", None)  # a token cached by an app context that outlives the request is another session's
    wanted = request.args.get("lang")
    if wanted in SUPPORTED_LOCALES:
        session["locale"] = wanted
    use_member_locale(session.get("locale", "zh_CN"))
    refresh()  # a locale Flask-Babel cached earlier in this app context is not this session's
    g.console_operator, g.console_signed_out = None, None
    token, seen = session.get("token"), session.get("seen", 0)
    if token:
        if time.time() - seen > IDLE_MINUTES.value() * 60:
            end()
            g.console_signed_out = "idle"
        else:
            try:
                g.console_operator = auth.operator_from_token(token)
                session["seen"] = int(time.time())
            except AppError:
                end()
    if request.endpoint in PUBLIC_ENDPOINTS or g.console_operator is not None:
        return None
    reason = "idle" if g.get("console_signed_out") else None
    return redirect(
        url_for("console.sign_in", next=request.full_path.rstrip("?") if request.method == "GET" else None, why=reason)
    )


def console_view(*roles: str, scope: str) -> Callable:
    """Declare who may use a view (roles; none: every role) and how it is scoped (``SCOPES``)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}")
    allowed = roles or ROLES

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if current().role not in allowed:
                raise Forbidden()
            return view(*args, **kwargs)

        wrapper.console_access = {"roles": allowed, "scope": scope}  # type: ignore[attr-defined]
        return wrapper

    return decorate
