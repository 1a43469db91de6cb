"""What the members package tells packages above it (care welcomes the new member; referrals and
the mall erase what they hold of a member who withdrew)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.core.events import DomainEvent


@dataclass(frozen=True)
class MemberActivated(DomainEvent):
    """A member became active and got the welcome gift (every way of joining ends here)."""

    member_id: int
    at: dt.datetime


@dataclass(frozen=True)
class MemberErased(DomainEvent):
    """The member withdrew consent to the privacy policy: their personal data is being erased
    (subscribers erase theirs in the same transaction)."""

    member_id: int
    at: dt.datetime
