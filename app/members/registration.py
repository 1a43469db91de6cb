"""Joining through the mini-app: consent first, then the phone number, then membership.

One call records the acceptance of the current privacy policy (and the optional purposes) and
the phone number together: nothing personal is stored before consent. A phone that belongs to a
pre-enrolled buyer from the DMS joins that member (activating it: purchase points, welcome gift)
instead of creating a second one; a unionid-linked service-account member is reused likewise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app import gateways
from app.core import audit, events, tunables
from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import Conflict, Forbidden, ServiceUnavailable, ValidationFailed
from app.core.i18n import _l
from app.members import activation, identities, services
from app.members.events import ConsentChanged
from app.members.identifiers import normalize_cn_mobile
from app.members.models import Member, WechatIdentity

if TYPE_CHECKING:
    from app.members.sessions import MemberRef

POLICY_VERSION = tunables.define("privacy.policy_version", "2026.1", "Privacy policy version members must accept")
POLICY_VERSIONS = tunables.define(
    "privacy.policy_versions",
    ["2026.1"],
    "Privacy policy versions a dealer (DMS) may still present to a buyer; the current version is always one",
)
OPTIONAL_PURPOSES = ("service_notifications", "marketing", "dealer_sharing")


@dataclass(frozen=True)
class Registration:
    member: Member
    joined_existing: bool
    credited_points: int


def check_policy_version(version: str) -> None:
    if version != POLICY_VERSION.value():
        raise ValidationFailed(
            fields={"policy_version": [_l("Please accept the current privacy policy.")]},
            details={"current_policy_version": POLICY_VERSION.value()},
        )


def known_policy_versions() -> set[str]:
    """Versions a consent may be recorded under: the listed ones and always the current one. Read
    like ``tunables.shared``: DMS intake asks on every event and otherwise needs no session."""
    return {*POLICY_VERSIONS.shared_value(), POLICY_VERSION.shared_value()}


class ConsentRequired(Forbidden):
    code = "consent_required"
    default_message = _l("Please accept the current privacy policy first.")


#: Acceptances seen recently, per mini-app session: (session id, its creation time, member id) →
#: (policy version accepted, monotonic deadline). The redemption hot path asks on every request; a
#: session that showed an acceptance skips the consent read for ``CONSENT_CACHE_SECONDS``. Only an
#: acceptance is kept; a consent change forgets the member's entries in this process at once (other
#: processes within the same few seconds), a new policy version misses the cache at once.
CONSENT_CACHE_SECONDS = 30.0
_CONSENT_CACHE_SIZE = 10_000
_accepted: dict[tuple[object, ...], tuple[str, float]] = {}


def require_current_consent(member: Member | MemberRef, session_key: tuple[object, ...] | None = None) -> None:
    """Nothing personal is stored for a member who has not accepted the current policy version
    (``member`` as a ``MemberRef``: its row is loaded only if the consent must be read)."""
    current = POLICY_VERSION.value()
    key = (*session_key, member.id) if session_key is not None else None
    if key is not None:
        seen = _accepted.get(key)
        if seen is not None and seen[0] == current and seen[1] > time.monotonic():
            return
    loaded = member if isinstance(member, Member) else db.session.get(Member, member.id)
    require_accepted_policy(None if loaded is None else services.consent_state(loaded).policy_version)
    if key is not None:
        if len(_accepted) >= _CONSENT_CACHE_SIZE:
            _accepted.clear()
        _accepted[key] = (current, time.monotonic() + CONSENT_CACHE_SECONDS)


def require_accepted_policy(accepted_policy: str | None) -> None:
    """``require_current_consent`` for a member whose last accepted policy version was read with
    the session (``sessions.resolve_refs``): no read, no cache, the same refusal."""
    current = POLICY_VERSION.value()
    if accepted_policy != current:
        raise ConsentRequired(details={"current_policy_version": current})


@events.within_transaction(ConsentChanged)
def _forget_acceptance(event: ConsentChanged) -> None:
    for key in [k for k in list(_accepted) if k[-1] == event.member_id]:
        _accepted.pop(key, None)


def needs_consent(member: Member | None) -> bool:
    return member is None or services.consent_state(member).policy_version != POLICY_VERSION.value()


def _lock_identity(identity: WechatIdentity) -> WechatIdentity:
    return db.session.scalars(
        sa.select(WechatIdentity)
        .where(WechatIdentity.id == identity.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def _member_for_phone(phone: str, identity: WechatIdentity) -> tuple[Member, bool]:
    """The member with this phone (joined) or a new one; a concurrent twin loses on the unique phone."""
    member = services.find_by_phone(phone)
    if member is not None:
        return member, True
    try:
        with db.session.begin_nested():
            return services.create_member(
                channel="miniapp", status="active", phone=phone, enrolled_at=utcnow(), activated_at=utcnow()
            ), False
    except IntegrityError:
        member = services.find_by_phone(phone)  # someone registered this number a moment ago
        if member is None:
            raise
        return member, True


#: WeChat's answers to a phone code that cannot be used (invalid, expired, too frequent).
UNUSABLE_PHONE_CODES = {gateways.BAD_CODE, 40013, 45011}


def shared_phone(phone_code: str) -> str:
    """The mainland mobile number the member shares with the getPhoneNumber button (via WeChat)."""
    try:
        shared = gateways.mini_app().phone_number(phone_code)
    except gateways.Refused as exc:
        if exc.code in UNUSABLE_PHONE_CODES:
            raise ValidationFailed(fields={"phone_code": [_l("This phone code is invalid or expired.")]}) from None
        raise ServiceUnavailable(_l("WeChat did not answer. Please try again.")) from None
    except gateways.Unavailable:
        raise ServiceUnavailable(_l("WeChat did not answer. Please try again.")) from None
    normalized = normalize_cn_mobile(shared.phone) if shared.country_code in ("86", "+86") else None
    if normalized is None:
        raise ValidationFailed(fields={"phone_code": [_l("Not a valid mainland China mobile number.")]})
    return normalized


def register_with_phone_code(
    identity: WechatIdentity, *, policy_version: str, purposes: list[str], phone_code: str
) -> Registration:
    """The mini-app's join: the policy version is checked *before* WeChat is asked for the phone."""
    check_policy_version(policy_version)
    return register(identity, policy_version=policy_version, purposes=purposes, phone=shared_phone(phone_code))


def register(identity: WechatIdentity, *, policy_version: str, purposes: list[str], phone: str) -> Registration:
    """Accept the policy, share the phone, become (or join) a member. Safe to call twice."""
    check_policy_version(policy_version)
    normalized = normalize_cn_mobile(phone)
    if normalized is None:
        raise ValidationFailed(fields={"phone_code": [_l("Not a valid mainland China mobile number.")]})
    identity = _lock_identity(identity)
    joined = False
    if identity.member_id is not None:
        member = db.session.get(Member, identity.member_id)
        assert member is not None
        if member.phone_index is None:
            services.claim_phone(member, normalized)
        elif member.phone != normalized:
            raise Conflict(_l("This WeChat account is already registered with another phone number."))
    else:
        member, joined = _member_for_phone(normalized, identity)
        other = db.session.scalar(
            sa.select(WechatIdentity.openid).where(
                WechatIdentity.member_id == member.id,
                WechatIdentity.app_id == identity.app_id,
                WechatIdentity.id != identity.id,
            )
        )
        if other is not None:
            raise Conflict(
                _l("This phone number is registered with another WeChat account. Please contact customer service.")
            )
        identities.bind(identity, member)
    services.record_consent(
        member,
        policy_version=policy_version,
        granted=[p for p in purposes if p in OPTIONAL_PURPOSES],
        withdrawn=[p for p in OPTIONAL_PURPOSES if p not in purposes],
        channel="miniapp",
    )
    credited = 0
    if member.status == "pre_enrolled":
        result = activation.activate(member, actor=("member", member.id))
        credited = result.released_points + result.welcome_points
    else:
        credited = activation.credit_welcome_gift(member)
    audit.record(
        actor=("member", member.id),
        action="member.registered",
        subject=("member", member.id),
        details={"via": "miniapp", "joined_existing": joined},
    )
    return Registration(member, joined, credited)
