"""What a member agreed to receive: consent by purpose and opt-out by category, checked when a
message is planned and again when it is sent (a withdrawal or an opt-out stops sends at once).

Categories: ``service`` (reminders about the membership: points, tiers, visits, bookings) needs the
``service_notifications`` consent; ``marketing`` (greetings and offers, ``care.marketing_kinds``)
needs the ``marketing`` consent and is frequency-capped (``care.caps``). Chat replies answer the
member and are neither.
"""

from __future__ import annotations

import sqlalchemy as sa

from app.care.models import CATEGORIES, NotificationPreference
from app.care.rules import category_of
from app.core.clock import utcnow
from app.core.db import db, forget_memo, insert_if_absent, memo_in_transaction
from app.members import services
from app.members.models import Member

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
    category = category_of(kind)
    if category is None:
        return None  # a chat reply: the member just wrote to us
    member = db.session.get(Member, member_id) if member_id is not None else None
    purpose = CONSENT_FOR[category]
    if member is None or services.consent_state(member).purposes.get(purpose) is not True:
        return f"no consent to {purpose.replace('_', ' ')}"
    if opted_out(member.id)[category]:
        return f"opted out of {category} messages"
    return None
