"""Who is calling the mini-app API: a signed-in WeChat user, a member, or a staff member."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import g, request

from app.core.errors import Forbidden, Unauthenticated
from app.core.i18n import _l, use_member_locale
from app.core.ratelimit import counted, wechat_user
from app.members import registration, sessions
from app.members.staff_mode import staff_of

BEARER = [{"miniappSession": []}]


class NotAMember(Forbidden):
    code = "not_a_member"
    default_message = _l("Please join the membership first.")


def bearer_token() -> str:
    """The mini-app session token the request carries, or 401."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(headers={"WWW-Authenticate": 'Bearer realm="miniapp"'})
    return token.strip()


def _authenticate() -> None:
    g.mini_session, g.identity, g.member = sessions.resolve(bearer_token())
    if g.member is not None:
        use_member_locale(g.member.locale)


#: Memberships the member endpoints serve (closed ones are gone).
_MEMBERS = ("active", "frozen")


def admit_member(status: str | None, locale: str | None = None) -> None:
    """``member_required``'s rule, also for a handler that resolved the session itself (the balance
    read, in one statement with its data): a membership that is active or frozen, else 403 (in the
    member's ``locale``, when there is a member)."""
    use_member_locale(locale)
    if status not in _MEMBERS:
        raise NotAMember()


def signed_in(view: Callable) -> Callable:
    """Any signed-in WeChat user (members and not-yet members)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _authenticate()
        return view(*args, **kwargs)

    return wrapper


def _authenticate_member() -> None:
    _authenticate()
    admit_member(None if g.member is None else g.member.status)


def member_required(view: Callable) -> Callable:
    """A signed-in user whose membership is active or frozen (closed memberships are gone)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _authenticate_member()
        return view(*args, **kwargs)

    return wrapper


def consented_member_required(view: Callable) -> Callable:
    """A member who has accepted the current privacy policy: endpoints that store personal data
    (profile, phone, cars, notification grants) refuse with 403 ``consent_required`` until then."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _authenticate_member()
        registration.require_current_consent(g.member, (g.mini_session.id, g.mini_session.created_at))
        return view(*args, **kwargs)

    return wrapper


def consented_member_ref_required(view: Callable) -> Callable:
    """``consented_member_required`` for a hot path that needs only who the member is: the same
    rule and refusals, but ``g.mini_session``, ``g.identity`` and ``g.member`` are plain values
    (``sessions.SessionRef``, ``IdentityRef``, ``MemberRef``: ids, openid, status, locale), read
    without building ORM rows; the member's last accepted policy version comes with them (the
    same statement), so the consent needs no read and no cache."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.mini_session, g.identity, g.member = sessions.resolve_refs(bearer_token())
        member = g.member
        admit_member(None if member is None else member.status, None if member is None else member.locale)
        registration.require_accepted_policy(None if member is None else member.accepted_policy)
        return view(*args, **kwargs)

    return wrapper


def staff_required(view: Callable) -> Callable:
    """A signed-in user bound to an active staff record (staff mode)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _authenticate()
        g.staff = staff_of(g.identity)
        if g.staff is None:
            raise Forbidden(_l("Staff mode needs an invite from your dealer."))
        return view(*args, **kwargs)

    return wrapper


def per_user_limit(limit: str) -> Callable:
    """A rate limit per signed-in WeChat user. Put it *below* the auth decorator: limits are checked
    when the decorated function is called, and only then is the user known (above it, every user
    behind one IP — a dealership's Wi-Fi, a proxy — would share one counter). Counted by the route
    itself (``ratelimit.counted``: flask-limiter's key, window, 429 and headers, less bookkeeping)."""
    return counted(limit, wechat_user)
