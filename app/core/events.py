"""Domain events: a package says what happened; the packages that care subscribe. The publisher
never imports its subscribers, so dependencies point one way (ARCHITECTURE.md).

The benefits events (booking, benefit use) are declared here rather than in their package: benefits
and care sit in the same layer and may not import each other, so the contract lives below both.

An event is a frozen dataclass declared in the publishing package's ``events.py``::

    @dataclass(frozen=True)
    class TierChanged(DomainEvent):
        member_id: int
        ...

    events.publish(TierChanged(...))          # inside a unit of work

Two kinds of subscriber (blinker signals, which Flask already ships):

* ``@within_transaction(TierChanged)`` runs at once, inside the publisher's transaction. Use it to
  write rows that must exist exactly when the change exists (a notification, an outbox entry);
  it flushes, never commits, and a failure fails the publisher's unit of work.
* ``@after_commit(TierChanged)`` runs once the unit of work has committed (never if it, or the
  savepoint the event was published in, rolls back). Use it for side effects outside the database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from blinker import Namespace

from app.core import after_commit as _after_commit

_signals = Namespace()

E = TypeVar("E", bound="DomainEvent")


@dataclass(frozen=True)
class DomainEvent:
    """Base of every domain event (a frozen dataclass of ids and facts, never ORM objects)."""


def _signal(event_type: type[DomainEvent], phase: str) -> Any:
    return _signals.signal(f"{event_type.__module__}.{event_type.__qualname__}:{phase}")


def publish(event: DomainEvent) -> None:
    """Tell the in-transaction subscribers now, and the after-commit ones after the commit."""
    _signal(type(event), "within").send(event)
    after = _signal(type(event), "after")
    if after.receivers:
        _after_commit.defer(after.send, event)


def within_transaction(event_type: type[E]) -> Callable[[Callable[[E], None]], Callable[[E], None]]:
    """Subscribe ``fn(event)`` inside the publisher's transaction."""

    def connect(fn: Callable[[E], None]) -> Callable[[E], None]:
        _signal(event_type, "within").connect(fn, weak=False)
        return fn

    return connect


def after_commit(event_type: type[E]) -> Callable[[Callable[[E], None]], Callable[[E], None]]:
    """Subscribe ``fn(event)`` after the publisher's unit of work commits."""

    def connect(fn: Callable[[E], None]) -> Callable[[E], None]:
        _signal(event_type, "after").connect(fn, weak=False)
        return fn

    return connect


# Events of benefits and booking, declared here (not in ``app/benefits``) because their subscribers
# (care: confirmations, 24-hour reminders, rating requests, callback tasks) sit in the same layer and
# may not import benefits. Payloads carry ids and facts, no personal data.


@dataclass(frozen=True)
class BookingConfirmed(DomainEvent):
    """A booking was made (once per booking: a reschedule cancels the old booking and makes a new
    one); care confirms it and reminds 24 hours before."""

    member_id: int
    booking_id: int
    benefit_code: str
    #: The slot's start; None for a benefit used without a slot (nothing to remind of).
    starts_at: dt.datetime | None
    at: dt.datetime


@dataclass(frozen=True)
class BookingCancelled(DomainEvent):
    """A booking was cancelled (in time, late, or replaced by a reschedule): its reminder is dropped."""

    member_id: int
    booking_id: int
    at: dt.datetime


@dataclass(frozen=True)
class BenefitUsed(DomainEvent):
    """A booked benefit was delivered (staff checked the member in): care asks for a rating."""

    member_id: int
    booking_id: int
    benefit_code: str
    at: dt.datetime


@dataclass(frozen=True)
class BookingRatedLow(DomainEvent):
    """A member rated a delivered benefit 2 or lower: customer service should call them back."""

    member_id: int
    booking_id: int
    rating: int
    at: dt.datetime


# Events of referrals, declared here for the same reason (care will notify the referrer).


@dataclass(frozen=True)
class ReferralMilestoneReached(DomainEvent):
    """A referee reached ``milestone`` (lead, test_drive, order, delivery, cancelled)."""

    referral_id: int
    referrer_member_id: int
    referee_member_id: int
    milestone: str
    at: dt.datetime


@dataclass(frozen=True)
class ReferralRewardCredited(DomainEvent):
    """Points were credited to the referrer for a milestone (pending during the cooling period)."""

    referral_id: int
    referrer_member_id: int
    milestone: str
    reward_points: int
    tier_points: int
    at: dt.datetime
