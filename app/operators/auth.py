"""Password login and signed bearer tokens for back-office users.

Tokens are ``itsdangerous`` timed signatures over (operator id, token version) with the app's
secret key: verifiable without storage, revoked by bumping ``token_version`` (sign-out,
deactivation, password reset). Sign-in is throttled per account and per IP (``throttle``) and
every attempt is audited.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from werkzeug.security import check_password_hash, generate_password_hash

from app.core import audit, tunables
from app.core.db import db
from app.core.errors import Forbidden, TooManyRequests, Unauthenticated
from app.core.i18n import _l
from app.operators import throttle
from app.operators.models import ROLES, Operator

TOKEN_HOURS = tunables.define("operators.token_hours", 12, "Hours a back-office sign-in lasts")
_SALT = "operator-session"

# A dummy hash so a login for an unknown user costs as much as one for a known user.
_TIMING_DUMMY = generate_password_hash("timing-dummy")


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def create_operator(username: str, *, name: str, role: str, password: str, dealer_id: int | None = None) -> Operator:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if role == "dealer_manager" and dealer_id is None:
        raise ValueError("a dealer manager belongs to a dealer")
    operator = Operator(
        username=username,
        name=name,
        role=role,
        dealer_id=dealer_id,
        password_hash=generate_password_hash(password),
    )
    db.session.add(operator)
    db.session.flush()
    return operator


def sign_in(username: str, password: str, *, ip: str) -> tuple[Operator, str]:
    """A token for the right password, unless the account or the IP is locked (429). Every attempt
    is audited; a failed one in a transaction of its own (the 401 rolls the request back)."""
    locked = throttle.locked_for(username, ip)
    if locked:
        _audit_failure(username, ip, locked=True)
        raise TooManyRequests(
            _l("Too many failed sign-ins. Please try again later."), headers={"Retry-After": str(locked)}
        )
    operator = db.session.scalar(sa.select(Operator).where(Operator.username == username, Operator.active))
    if operator is None:
        check_password_hash(_TIMING_DUMMY, password)
    if operator is None or not check_password_hash(operator.password_hash, password):
        locked = throttle.failed(username, ip)
        _audit_failure(username, ip, locked=bool(locked))
        raise Unauthenticated(_l("Wrong username or password."))
    throttle.succeeded(username, ip)
    audit.record(
        actor=("staff", operator.actor),
        action="operator.signed_in",
        subject=("operator", operator.username),
        details={"ip": ip},
    )
    return operator, issue_token(operator)


def _audit_failure(username: str, ip: str, *, locked: bool) -> None:
    audit.record_regardless(
        actor=("staff", f"operator:{username}"),
        action="operator.sign_in_failed",
        subject=("operator", username),
        details={"ip": ip, "locked": locked},
    )


def revoke_tokens(operator: Operator) -> None:
    """Every token issued to this operator stops working now (they carry the version)."""
    db.session.execute(
        sa.update(Operator).where(Operator.id == operator.id).values(token_version=Operator.token_version + 1)
    )
    db.session.refresh(operator)


def sign_out(operator: Operator) -> None:
    """Sign out everywhere: this token and every other one of the operator."""
    revoke_tokens(operator)
    audit.record(actor=("staff", operator.actor), action="operator.signed_out", subject=("operator", operator.username))


def by_username(username: str) -> Operator | None:
    return db.session.scalar(sa.select(Operator).where(Operator.username == username))


def deactivate(operator: Operator, *, actor: tuple[str, str], reason: str) -> None:
    """The account can no longer sign in, and its outstanding tokens stop working now."""
    operator.active = False
    revoke_tokens(operator)
    audit.record(actor=actor, action="operator.deactivated", subject=("operator", operator.username), reason=reason)


def reset_password(operator: Operator, password: str, *, actor: tuple[str, str], reason: str) -> None:
    """A new password; outstanding tokens stop working and a lockout is lifted."""
    operator.password_hash = generate_password_hash(password)
    revoke_tokens(operator)
    throttle.unlock(operator.username)
    audit.record(actor=actor, action="operator.password_reset", subject=("operator", operator.username), reason=reason)


def issue_token(operator: Operator) -> str:
    return _serializer().dumps([operator.id, operator.token_version])


def operator_from_token(token: str) -> Operator:
    try:
        operator_id, version = _serializer().loads(token, max_age=TOKEN_HOURS.value() * 3600)
    except SignatureExpired:
        raise Unauthenticated(_l("Your session has expired. Please sign in again.")) from None
    except (BadSignature, ValueError, TypeError):
        raise Unauthenticated() from None
    operator = db.session.get(Operator, operator_id)
    if operator is None or not operator.active or operator.token_version != version:
        raise Unauthenticated()
    return operator


def current_operator() -> Operator:
    return g.operator


def require_operator(*roles: str) -> Callable:
    """Decorator: a valid bearer token of an active operator holding one of ``roles``."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise Unauthenticated(headers={"WWW-Authenticate": 'Bearer realm="loyalty"'})
            operator = operator_from_token(token.strip())
            if roles and operator.role not in roles:
                raise Forbidden()
            g.operator = operator
            return view(*args, **kwargs)

        wrapper.operator_roles = roles  # type: ignore[attr-defined]  # read by the API contract test
        return wrapper

    return decorate
