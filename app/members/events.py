"""What the members package tells packages above it, ids only: care welcomes the new member;
referrals and the mall erase what they hold of a member who withdrew; the CRM outbox hears of every
change."""

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


@dataclass(frozen=True)
class MemberChanged(DomainEvent):
    """The member row changed: profile, phone, status (enrolled, activated, closed, merged)."""

    member_id: int


@dataclass(frozen=True)
class MembersImported(DomainEvent):
    """Members were created or changed set-based, not one by one (a chunk of a dealer-club import):
    profile, consents and cars at once."""

    member_ids: tuple[int, ...]


@dataclass(frozen=True)
class IdentityLinked(DomainEvent):
    """A WeChat identity was bound to the member or learned its unionid."""

    member_id: int
    identity_id: int


@dataclass(frozen=True)
class ConsentChanged(DomainEvent):
    """New consent decisions were recorded for the member."""

    member_id: int


@dataclass(frozen=True)
class OwnershipChanged(DomainEvent):
    """A car link of the member started or ended."""

    member_id: int
    ownership_id: int


@dataclass(frozen=True)
class MembersMerged(DomainEvent):
    """``merged_ids`` were merged into ``survivor_id`` (``member_merges`` row ``merge_id``)."""

    survivor_id: int
    merged_ids: tuple[int, ...]
    merge_id: int
