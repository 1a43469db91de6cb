"""What a member agreed to receive: consent by purpose and opt-out by category, checked when a
message is planned and again when it is sent (a withdrawal or an opt-out stops sends at once).

Categories: ``service`` (reminders about the membership: points, tiers, visits, bookings) needs the
``service_notifications`` consent; ``marketing`` (greetings and offers, ``care.marketing_kinds``)
needs the ``marketing`` consent and is frequency-capped (``care.caps``). Chat replies answer the
member and are neither.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import sqlalchemy as sa

from app.care.models import CATEGORIES, NotificationPreference
from app.care.rules import category_of
from app.core.clock import utcnow
from app.core.db import db, forget_memo, insert_if_absent, memo_in_transaction, remember_in_transaction
from app.members import services
from app.members.models import Consent, Member

#: The consent purpose each category needs.
CONSENT_FOR = {"service": "service_notifications", "marketing": "marketing"}


def opted_out(member_id: int) -> dict[str, bool]:
    """The member's choice per category (no row: not opted out); read once per transaction."""
    return dict(
        memo_in_transaction(
            ("opted_out", member_id), lambda: _read_opted_out(member_id), models=(NotificationPreference,)
        )
    )


def _read_opted_out(member_id: int) -> dict[str, bool]:
    rows = db.session.execute(
        sa.select(NotificationPreference.category, NotificationPreference.opted_out).where(
            NotificationPreference.member_id == member_id
        )
    )
    choices = dict.fromkeys(CATEGORIES, False)
    choices.update({category: bool(value) for category, value in rows})
    return choices


def preload(member_ids: Collection[int]) -> list[Member]:
    """``why_not_wanted``'s reads for many members at once, remembered for this transaction (the
    members, their consents and opt-outs: four queries, not three per member). Returns the members:
    the caller keeps them while it needs them in the session."""
    ids = sorted(set(member_ids))
    members = services.preload_consent_states(ids)
    for member_id, chosen in _opted_out_of(ids).items():
        remember_in_transaction(("opted_out", member_id), chosen, models=(NotificationPreference,))
    return members


def set_opted_out(member_id: int, changes: dict[str, bool], *, via: str) -> dict[str, bool]:
    """Record the member's choices (an upsert per category); returns every category's state."""
    for category, value in changes.items():
        if category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r}")
        values = {"member_id": member_id, "category": category, "opted_out": value, "via": via, "updated_at": utcnow()}
        if insert_if_absent(NotificationPreference, values, ("member_id", "category")) is None:
            db.session.execute(
                sa.update(NotificationPreference)
                .where(NotificationPreference.member_id == member_id, NotificationPreference.category == category)
                .values(opted_out=value, via=via, updated_at=utcnow())
            )
    forget_memo(("opted_out", member_id))
    return opted_out(member_id)


def consented(member: Member) -> dict[str, bool]:
    """Whether the member's consent allows each category."""
    purposes = services.consent_state(member).purposes
    return {category: purposes.get(purpose) is True for category, purpose in CONSENT_FOR.items()}


def why_not_wanted(member_id: int | None, kind: str) -> str | None:
    """The reason this member must not get this kind now, or None."""
    if category_of(kind) is None:
        return None  # a chat reply: the member just wrote to us
    member = db.session.get(Member, member_id) if member_id is not None else None
    if member is None:
        return refusal(kind, None)
    return refusal(kind, Wishes(services.consent_state(member).purposes, opted_out(member.id)))


@dataclass(frozen=True)
class Wishes:
    """A member's consents (purpose → granted, the latest decision) and opt-outs (category → bool)."""

    purposes: dict[str, bool]
    opted_out: dict[str, bool]


def refusal(kind: str, wishes: Wishes | None) -> str | None:
    """``why_not_wanted`` on known wishes (None: no such member)."""
    category = category_of(kind)
    if category is None:
        return None
    purpose = CONSENT_FOR[category]
    if wishes is None or wishes.purposes.get(purpose) is not True:
        return f"no consent to {purpose.replace('_', ' ')}"
    if wishes.opted_out.get(category):
        return f"opted out of {category} messages"
    return None


def wishes_of(member_ids: Collection[int]) -> dict[int, Wishes]:
    """``Wishes`` of many members in two queries (a dispatcher's batch); members without a consent
    row have empty purposes."""
    ids = sorted(set(member_ids))
    purposes: dict[int, dict[str, bool]] = {member_id: {} for member_id in ids}
    for member_id, purpose, granted in db.session.execute(
        sa.select(Consent.member_id, Consent.purpose, Consent.granted)
        .where(Consent.member_id.in_(ids))
        .order_by(Consent.id)  # the last decision per purpose wins, as in ``consent_state``
    ):
        purposes[member_id][purpose] = granted
    choices = _opted_out_of(ids)
    return {member_id: Wishes(purposes[member_id], choices[member_id]) for member_id in ids}


def _opted_out_of(ids: list[int]) -> dict[int, dict[str, bool]]:
    """``opted_out`` of many members in one query."""
    choices: dict[int, dict[str, bool]] = {member_id: dict.fromkeys(CATEGORIES, False) for member_id in ids}
    for member_id, category, value in db.session.execute(
        sa.select(
            NotificationPreference.member_id, NotificationPreference.category, NotificationPreference.opted_out
        ).where(NotificationPreference.member_id.in_(ids))
    ):
        choices[member_id][category] = bool(value)
    return choices
