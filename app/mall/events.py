"""What the mall does when others publish: erase delivery addresses when a member withdraws."""

from __future__ import annotations

from app.core import events
from app.mall import ordering
from app.members.events import MemberErased


@events.within_transaction(MemberErased)
def erase_addresses(event: MemberErased) -> None:
    """Same transaction as the withdrawal: both happen or neither."""
    ordering.erase_addresses(event.member_id)
