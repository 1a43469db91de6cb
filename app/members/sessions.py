"""Mini-app sign-in: ``wx.login`` code → ``jscode2session`` → our own session token.

The token is an ``itsdangerous`` signature over the session id, with an expiry; the session row
holds WeChat's ``session_key`` (encrypted, never sent to the client) and can be revoked. Refreshing
rotates: a new session replaces the old one, which stops working at once. A sign-in has an
absolute lifetime (``miniapp.session_max_hours``, 30 days): refreshing never extends it, after it
the mini-app must sign in again with a fresh ``wx.login`` code.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app import gateways
from app.config import current_settings
from app.core import tunables
from app.core.clock import utcnow
from app.core.db import db, driver_execute
from app.core.errors import ServiceUnavailable, Unauthenticated
from app.core.i18n import _l
from app.members import identities
from app.members.models import Consent, Member, MiniappSession, WechatIdentity
from app.points import queries as points
from app.points.models import PointAccount
from app.points.queries import Balance
from app.tiers.models import TierState
from app.tiers.policy import remember_current_tier

SESSION_HOURS = tunables.define("miniapp.session_hours", 2, "Hours a mini-app sign-in lasts before it must refresh")
MAX_HOURS = tunables.define(
    "miniapp.session_max_hours",
    720,
    "Absolute lifetime of a mini-app sign-in in hours (30 days): refreshing cannot extend it",
)
_SALT = "miniapp-session"


@dataclass(frozen=True)
class SignedIn:
    token: str
    expires_at: dt.datetime
    identity: WechatIdentity
    session: MiniappSession


def _serializer() -> URLSafeTimedSerializer:
    return _serializer_for(current_app.config["SECRET_KEY"])


@functools.lru_cache(maxsize=4)
def _serializer_for(secret_key: str) -> URLSafeTimedSerializer:
    """Built once per key (stateless, so shared by threads): every request checks a token."""
    return URLSafeTimedSerializer(secret_key, salt=_SALT)


def _new_session(
    identity: WechatIdentity, session_key: str | None, signed_in_at: dt.datetime | None = None
) -> SignedIn:
    """A session token; a refresh keeps the sign-in's start, and no session outlives it by more
    than ``miniapp.session_max_hours``."""
    now = utcnow()
    signed_in_at = signed_in_at or now
    session = MiniappSession(
        identity_id=identity.id,
        session_key=session_key,
        created_at=now,
        signed_in_at=signed_in_at,
        expires_at=min(now + dt.timedelta(hours=SESSION_HOURS.value()), _end_of_life(signed_in_at)),
    )
    db.session.add(session)
    db.session.flush()
    return SignedIn(_serializer().dumps(session.id), session.expires_at, identity, session)


def _end_of_life(signed_in_at: dt.datetime) -> dt.datetime:
    return signed_in_at + dt.timedelta(hours=MAX_HOURS.shared_value())


def sign_in(openid: str, session_key: str, unionid: str | None) -> SignedIn:
    """After jscode2session: the identity (created on first visit), joined to the member that owns
    the same unionid on the service account, and a fresh session."""
    app_id = current_settings().MINIAPP_APP_ID
    identity = identities.get_or_create(app_id, openid, app_kind="miniapp")
    if unionid:
        identities.link_unionid(identity, unionid)
    return _new_session(identity, session_key)


def sign_in_with_code(code: str) -> SignedIn:
    """Exchange a ``wx.login`` code (through WeChat) for our session; WeChat's session_key stays here."""
    try:
        result = gateways.mini_app().code_to_session(code)
    except gateways.Refused:
        raise Unauthenticated(_l("This sign-in code is invalid or was already used. Please try again.")) from None
    except gateways.Unavailable:
        raise ServiceUnavailable(_l("WeChat did not answer. Please try again.")) from None
    return sign_in(result.openid, result.session_key, result.unionid)


#: One round trip for the session, the identity and the member; built once (every request runs it).
_SESSION_WITH_IDENTITY_AND_MEMBER = (
    sa.select(MiniappSession, WechatIdentity, Member, TierState.tier)
    .join(WechatIdentity, WechatIdentity.id == MiniappSession.identity_id)
    .outerjoin(Member, Member.id == WechatIdentity.member_id)
    .outerjoin(TierState, TierState.member_id == Member.id)  # what most answers are tailored by
    .where(MiniappSession.id == sa.bindparam("session_id"))
)


def _session_id_of(token: str) -> int:
    """The session id a bearer token signs, or 401 (forged, or older than a refresh period)."""
    try:
        session_id, signed_at = _verified(current_app.config["SECRET_KEY"], token)
    except (BadSignature, ValueError, TypeError):
        raise Unauthenticated() from None
    age = int(time.time()) - signed_at  # what ``loads(…, max_age=…)`` checks, to the second
    if age > SESSION_HOURS.shared_value() * 3600 or age < 0:
        raise Unauthenticated(_l("Your session has expired. Please sign in again."))
    return session_id


@functools.lru_cache(maxsize=10_000)
def _verified(secret_key: str, token: str) -> tuple[int, int]:
    """The session id a token signs and when it was signed (Unix seconds), once its signature
    checks out. Remembered per process (a signature that checked out once always does with the
    same key; forged tokens raise and are not kept): every mini-app request presents its token,
    and the HMAC with its key derivation, the base64 and the JSON cost more than the rest of the
    check. The age is checked on every call, by ``_session_id_of``."""
    session_id, signed_at = _serializer_for(secret_key).loads(token, return_timestamp=True)
    return session_id, int(signed_at.timestamp())


def _ensure_live(revoked_at: dt.datetime | None, expires_at: dt.datetime, signed_in_at: dt.datetime) -> None:
    """401 once a session is revoked (signed out, rotated), expired, or past the sign-in's absolute lifetime."""
    now = utcnow()
    if revoked_at is not None or expires_at <= now or _end_of_life(signed_in_at) <= now:
        raise Unauthenticated(_l("Your session has expired. Please sign in again."))


def resolve(token: str) -> tuple[MiniappSession, WechatIdentity, Member | None]:
    """The live session of a bearer token with its identity and member (None before joining), or 401."""
    session_id = _session_id_of(token)
    row = db.session.execute(_SESSION_WITH_IDENTITY_AND_MEMBER, {"session_id": session_id}).first()
    if row is None:
        raise Unauthenticated()
    session, identity, member, tier = row
    _ensure_live(session.revoked_at, session.expires_at, session.signed_in_at)
    if member is not None:
        remember_current_tier(member.id, tier)  # the request's ``current_tier`` needs no statement
    return session, identity, member


@dataclass(frozen=True, slots=True)
class SessionRef:
    """``resolve_refs``: the session's fields a hot path needs (the consent cache's key)."""

    id: int
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class IdentityRef:
    id: int
    openid: str


@dataclass(frozen=True, slots=True)
class MemberRef:
    """Who the member is, not the ORM row: what ``member_required``'s rule and a hot path need."""

    id: int
    status: str
    locale: str
    #: The privacy policy version of the member's last acceptance (None: never accepted), read
    #: with the session (``resolve_refs``): the consent rule needs no read of its own.
    accepted_policy: str | None = None


#: The policy version the member last accepted (``services.consent_state``'s ``policy_version``:
#: the last granted ``privacy_policy`` decision recorded), as a column of the session's statement.
_ACCEPTED_POLICY = (
    sa.select(Consent.policy_version)
    .where(Consent.member_id == Member.id, Consent.purpose == sa.literal_column("'privacy_policy'"), Consent.granted)
    .order_by(Consent.id.desc())
    .limit(sa.literal_column("1"))  # constants in the text: the driver's statement binds only the session id
    .correlate(Member)
    .scalar_subquery()
)

#: ``resolve``'s statement as columns only (no ORM rows, nothing decrypted); built once.
_SESSION_REFS = (
    sa.select(
        MiniappSession.id,
        MiniappSession.created_at,
        MiniappSession.revoked_at,
        MiniappSession.expires_at,
        MiniappSession.signed_in_at,
        WechatIdentity.id,
        WechatIdentity.openid,
        Member.id,
        Member.status,
        Member.locale,
        TierState.tier,
        _ACCEPTED_POLICY,
    )
    .join(WechatIdentity, WechatIdentity.id == MiniappSession.identity_id)
    .outerjoin(Member, Member.id == WechatIdentity.member_id)
    .outerjoin(TierState, TierState.member_id == Member.id)
    .where(MiniappSession.id == sa.bindparam("session_id"))
)


def resolve_refs(token: str) -> tuple[SessionRef, IdentityRef, MemberRef | None]:
    """``resolve`` (the same statement, the same 401s) answering plain values instead of ORM rows:
    for a hot path that needs only ids, status and locale (the mall's redemption)."""
    row = _session_refs_row(_session_id_of(token))
    if row is None:
        raise Unauthenticated()
    sid, created_at, revoked_at, expires_at, signed_in_at, identity_id, openid, member_id, status, locale = row[:10]
    tier, accepted = row[10:]
    _ensure_live(revoked_at, expires_at, signed_in_at)
    member = None
    if member_id is not None:
        member = MemberRef(member_id, status, locale, accepted)
        remember_current_tier(member_id, tier)
    return SessionRef(sid, created_at.astimezone(dt.UTC)), IdentityRef(identity_id, openid), member


def _session_refs_row(session_id: int) -> tuple | None:
    """On PostgreSQL straight to the session's psycopg connection (in its transaction, like the
    ledger's spend): SQLAlchemy's execution and result machinery cost more CPU than the query.
    The timestamps come back aware (``timestamptz``); ``_ensure_live`` compares them as they are."""
    if db.dialect != "postgresql":
        return db.session.execute(_SESSION_REFS, {"session_id": session_id}).first()
    return driver_execute(_session_refs_sql(), {"session_id": session_id}).fetchone()


@functools.cache
def _session_refs_sql() -> str:
    from sqlalchemy.dialects import postgresql

    return str(_SESSION_REFS.compile(dialect=postgresql.psycopg.dialect()))


@dataclass(frozen=True)
class MemberBalance:
    """``resolve_with_balance``: who is asking (the member's fields the answer needs) and the balance."""

    member_id: int | None
    member_no: str | None
    member_status: str | None
    locale: str | None
    balance: Balance | None
    version: str | None


def _session_with_balance() -> sa.Select:
    """The session, its identity's member, the member's account and spendable lots by expiry date,
    in one statement (the lots by the member id of the same session, an init plan run once)."""
    session_id = sa.bindparam("session_id")
    member_of_session = (
        sa.select(WechatIdentity.member_id)
        .join(MiniappSession, MiniappSession.identity_id == WechatIdentity.id)
        .where(MiniappSession.id == session_id)
        .scalar_subquery()
    )
    lots = points.spendable_lots_by_expiry(member_of_session)
    return (
        sa.select(
            MiniappSession.revoked_at.label("session_revoked_at"),
            MiniappSession.expires_at.label("session_expires_at"),
            MiniappSession.signed_in_at.label("session_signed_in_at"),
            Member.id.label("member_id"),
            Member.member_no,
            Member.status.label("member_status"),
            Member.locale,
            *points.ACCOUNT_COLUMNS,
            lots.c.expires_at,
            lots.c.points,
        )
        .select_from(MiniappSession)
        .join(WechatIdentity, WechatIdentity.id == MiniappSession.identity_id)
        .outerjoin(Member, Member.id == WechatIdentity.member_id)
        .outerjoin(PointAccount, PointAccount.member_id == Member.id)
        .outerjoin(lots, sa.true())
        .where(MiniappSession.id == session_id)
        .order_by(lots.c.expires_at)
    )


#: Built once: the mini-app's home screen reads it on every visit.
_SESSION_WITH_BALANCE = _session_with_balance()


def resolve_with_balance(token: str) -> MemberBalance:
    """``resolve`` and the member's ``points.queries.balance_and_version`` in one round trip (one
    statement, no transaction around it: ``Database.read_once``), no ORM objects: the balance read,
    the hottest request of the program. The same 401s as ``resolve``; a session of someone who has
    not joined comes back with ``member_id`` None."""
    rows = db.read_once(_SESSION_WITH_BALANCE, {"session_id": _session_id_of(token)})
    if not rows:
        raise Unauthenticated()
    first = rows[0]
    _ensure_live(first.session_revoked_at, first.session_expires_at, first.session_signed_in_at)
    if first.member_id is None:
        return MemberBalance(None, None, None, None, None, None)
    has_account = first.reward_available is not None  # else no rows: zeros, as ``balance_and_version``
    balance, version = points.balance_and_version_of(first.member_id, rows if has_account else [])
    return MemberBalance(first.member_id, first.member_no, first.member_status, first.locale, balance, version)


def rotate(session: MiniappSession, identity: WechatIdentity) -> SignedIn:
    """A new token for the same sign-in; the old one stops working now. Exactly once: of two
    concurrent refreshes with one token, the second finds it revoked and gets 401."""
    revoked = db.session.execute(
        sa.update(MiniappSession)
        .where(MiniappSession.id == session.id, MiniappSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if revoked.rowcount != 1:
        raise Unauthenticated(_l("Your session has expired. Please sign in again."))
    fresh = _new_session(identity, session.session_key, session.signed_in_at)
    db.session.execute(
        sa.update(MiniappSession).where(MiniappSession.id == session.id).values(replaced_by_id=fresh.session.id)
    )
    db.session.refresh(session)
    return fresh


def revoke(session: MiniappSession) -> None:
    session.revoked_at = utcnow()
    db.session.flush()


def member_of(identity: WechatIdentity) -> Member | None:
    return identities.member_of(identity)
