"""What care does when other packages publish: tell the member about a tier change."""

from __future__ import annotations

from app.care import notify
from app.core import events
from app.tiers.events import TierChanged


@events.within_transaction(TierChanged)
def notify_tier_change(event: TierChanged) -> None:
    """Queue the notice in the same transaction as the change; it is sent after the commit."""
    notify.tier_changed(event.member_id, event.from_tier, event.to_tier, event.reason, event.at)
