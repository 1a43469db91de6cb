"""What the members package tells other packages (care welcomes the new member)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.core.events import DomainEvent


@dataclass(frozen=True)
class MemberActivated(DomainEvent):
    """A member became active and got the welcome gift (every way of joining ends here)."""

    member_id: int
    at: dt.datetime
