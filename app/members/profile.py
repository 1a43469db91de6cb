"""Profile changes by the member: name, gender, birthday (set once, changed at most once), city,
home address, locale; the preferred dealer (kept by the CRM, read here)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from app.core import audit, events
from app.core.clock import business_today, utcnow
from app.core.db import db
from app.core.errors import Conflict, ValidationFailed
from app.core.i18n import _l
from app.dealers.models import Dealer
from app.members import registration, services
from app.members.events import MemberChanged
from app.members.models import Member

#: Birthday changes after the first entry (birthday-month bonus abuse is why there is a limit).
BIRTHDAY_CHANGES_ALLOWED = 1


def birthday_changes_left(member: Member) -> int | None:
    """How many more times the birthday can be changed; None until it is first set (that is free)."""
    if member.birthday is None:
        return None
    return max(BIRTHDAY_CHANGES_ALLOWED - member.birthday_changes, 0)


def preferred_dealer(member: Member) -> Dealer | None:
    """The dealer the member prefers (set from the CRM's profile), open or not; None if none."""
    return db.session.get(Dealer, member.preferred_dealer_id) if member.preferred_dealer_id else None


def change_phone(member: Member, phone_code: str) -> Member:
    """Move the membership to the mobile number the member shares now (refused if another member
    holds it); audited without the numbers (the audit log is never erased)."""
    normalized = registration.shared_phone(phone_code)
    services.claim_phone(member, normalized)
    audit.record(actor=("member", member.id), action="member.phone_changed", subject=("member", member.id))
    return member


def update(member: Member, changes: dict[str, Any]) -> Member:
    birthday = changes.pop("birthday", None)
    if birthday is not None and birthday != member.birthday:
        _change_birthday(member, birthday)
    for field in ("name", "gender", "city", "address", "locale"):
        if field in changes:
            setattr(member, field, changes[field])
    member.profile_updated_at = utcnow()
    audit.record(
        actor=("member", member.id),
        action="member.profile_updated",
        subject=("member", member.id),
        details={"fields": sorted([*changes, *(["birthday"] if birthday is not None else [])])},
    )
    db.session.flush()
    events.publish(MemberChanged(member.id))
    return member


def _change_birthday(member: Member, birthday: dt.date) -> None:
    today = business_today()
    if not (today.replace(year=today.year - 120) <= birthday <= today):
        raise ValidationFailed(fields={"birthday": [_l("Please enter a real date of birth.")]})
    if member.birthday is not None:
        if member.birthday_changes >= BIRTHDAY_CHANGES_ALLOWED:
            raise Conflict(_l("Your birthday can only be changed once. Please contact customer service."))
        member.birthday_changes += 1
    member.birthday = birthday
