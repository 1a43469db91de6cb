"""Events the members package publishes (subscribers live in higher packages)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.core.events import DomainEvent


@dataclass(frozen=True)
class MemberWithdrew(DomainEvent):
    """The member withdrew consent to the privacy policy: packages holding their personal data
    (a delivery address, …) erase it in the same transaction."""

    member_id: int
    at: dt.datetime
