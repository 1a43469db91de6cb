"""Subscribers of referrals to other packages' events."""

from __future__ import annotations

import sqlalchemy as sa

from app.core import events
from app.core.db import db
from app.dealers.models import SalesLead
from app.members.events import MemberErased
from app.referrals.models import MemberDevice, Referral


@events.within_transaction(MemberErased)
def erase_devices(event: MemberErased) -> None:
    """A withdrawal of consent erases the device hashes kept for fraud checks and the phone's blind
    index on the member's referral leads (PIPL)."""
    db.session.execute(sa.delete(MemberDevice).where(MemberDevice.member_id == event.member_id))
    db.session.execute(
        sa.update(Referral).where(Referral.referee_member_id == event.member_id).values(device_hash=None)
    )
    db.session.execute(
        sa.update(SalesLead)
        .where(SalesLead.member_id == event.member_id, SalesLead.source == "referral")
        .values(phone_index=None)
    )
