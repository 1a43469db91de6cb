"""Subscribers: every change the CRM must learn writes an outbox row in the changing transaction."""

from __future__ import annotations

from app.core import events
from app.crm import outbox
from app.members.events import (
    ConsentChanged,
    IdentityLinked,
    MemberChanged,
    MembersImported,
    MembersMerged,
    OwnershipChanged,
)
from app.points.events import BalanceChanged
from app.tiers.events import TierChanged


@events.within_transaction(MemberChanged)
def _member_changed(event: MemberChanged) -> None:
    outbox.enqueue(event.member_id, "member")


@events.within_transaction(MembersImported)
def _members_imported(event: MembersImported) -> None:
    """One snapshot row per member (its profile, identities, consents and cars as they are sent)."""
    outbox.enqueue_all(event.member_ids, "snapshot", {"source": "import"})


@events.within_transaction(IdentityLinked)
def _identity_linked(event: IdentityLinked) -> None:
    outbox.enqueue(event.member_id, "identity", {"identity_id": event.identity_id})


@events.within_transaction(ConsentChanged)
def _consent_changed(event: ConsentChanged) -> None:
    outbox.enqueue(event.member_id, "consent")


@events.within_transaction(OwnershipChanged)
def _ownership_changed(event: OwnershipChanged) -> None:
    outbox.enqueue(event.member_id, "ownership", {"ownership_id": event.ownership_id})


@events.within_transaction(TierChanged)
def _tier_changed(event: TierChanged) -> None:
    outbox.enqueue(event.member_id, "tier")


@events.within_transaction(BalanceChanged)
def _balance_changed(event: BalanceChanged) -> None:
    outbox.enqueue(event.member_id, "balance")


@events.within_transaction(MembersMerged)
def _members_merged(event: MembersMerged) -> None:
    outbox.enqueue(event.survivor_id, "merge", {"merged_ids": list(event.merged_ids), "merge_id": event.merge_id})
    for merged_id in event.merged_ids:
        outbox.enqueue(merged_id, "member")
