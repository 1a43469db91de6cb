"""What care does when other packages publish: welcome a new member, tell a member about a tier
change, confirm and remind bookings, ask for a rating after a benefit was used, open a callback
task when a member rated a benefit 2 or lower, and tell a referrer how their friend is getting on
and when a referral reward was credited."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.care import callbacks, notify, preferences
from app.care.models import Notification
from app.core import events, tunables
from app.core.clock import utcnow
from app.core.db import db, remember_in_transaction
from app.core.events import (
    BenefitUsed,
    BookingCancelled,
    BookingConfirmed,
    BookingRatedLow,
    ReferralMilestoneReached,
    ReferralRewardCredited,
)
from app.members import services
from app.members.events import MemberActivated
from app.members.models import Member
from app.points.models import PointEntry, PointLot
from app.tiers.events import TierChanged, TierChangesComing

BOOKING_REMINDER_HOURS = tunables.define(
    "care.booking_reminder_hours", 24, "Hours before a booked benefit when the member is reminded"
)
RATING_REQUEST_DELAY_HOURS = tunables.define(
    "care.rating_request_delay_hours", 2, "Hours after a benefit was delivered when the member is asked to rate it"
)


@events.within_transaction(TierChanged)
def notify_tier_change(event: TierChanged) -> None:
    """Queue the notice in the same transaction as the change; it is sent after the commit."""
    notify.tier_changed(event.member_id, event.from_tier, event.to_tier, event.reason, event.at)


@events.within_transaction(TierChangesComing)
def preload_for_tier_notices(event: TierChangesComing) -> None:
    """A review's chunk: the members' consents and opt-outs read at once, and the notices of all
    the changes that follow planned in one INSERT (each ``TierChanged`` then finds its notice
    planned). The members are kept in the session until the transaction ends."""
    members = preferences.preload(event.member_ids)
    remember_in_transaction(("tier_notice_members", event.member_ids), members, models=())
    notify.tier_changes_coming([(c.member_id, c.from_tier, c.to_tier, c.reason, c.at) for c in event.changes])


@events.within_transaction(MemberActivated)
def welcome(event: MemberActivated) -> None:
    """Welcome the member once, when they can receive it: a newcomer from an advisor's QR has not
    consented yet, and is welcomed when the mini-app registration (with consent) activates again."""
    member = db.session.get(Member, event.member_id)
    if member is None or services.consent_state(member).purposes.get("service_notifications") is not True:
        return
    notify.queue(event.member_id, "welcome", period="welcome", payload={})


def _booking_period(booking_id: int, starts_at: dt.datetime) -> str:
    return f"{booking_id}:{starts_at.astimezone(dt.UTC):%Y%m%dT%H%M}"


def _drop_reminders(member_id: int, booking_id: int, *, reason: str) -> None:
    """Skip the booking's planned reminders."""
    db.session.execute(
        sa.update(Notification)
        .where(
            Notification.member_id == member_id,
            Notification.kind == "booking_reminder",
            Notification.period.startswith(f"{booking_id}:", autoescape=True),
            Notification.status == "planned",
        )
        .values(status="skipped", error=reason, finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )


@events.within_transaction(BookingConfirmed)
def confirm_booking(event: BookingConfirmed) -> None:
    """A confirmation now and a reminder 24 hours before, planned in one statement. A benefit used
    without a slot is confirmed with nothing to remind of. A booking's time never changes: a
    reschedule is a new booking, and the old one's reminder went with its cancellation."""
    starts_at = event.starts_at
    period = _booking_period(event.booking_id, starts_at or event.at)
    payload = {
        "booking_id": event.booking_id,
        "benefit_code": event.benefit_code,
        "starts_at": starts_at.isoformat() if starts_at else None,
    }
    planned = [notify.Notice("booking_confirmed", period, payload)]
    if starts_at is not None:
        remind_at = starts_at - dt.timedelta(hours=BOOKING_REMINDER_HOURS.value())
        if remind_at > utcnow():  # booked for within a day: the confirmation is the reminder
            planned.append(notify.Notice("booking_reminder", period, payload, remind_at))
    notify.queue_all(event.member_id, planned)


@events.within_transaction(BookingCancelled)
def cancel_booking(event: BookingCancelled) -> None:
    """A cancelled booking, also the one a reschedule replaced, is not reminded of."""
    _drop_reminders(event.member_id, event.booking_id, reason="booking cancelled")


@events.within_transaction(BenefitUsed)
def ask_for_rating(event: BenefitUsed) -> None:
    """A rating request a little after the benefit was delivered (held over quiet hours)."""
    notify.queue(
        event.member_id,
        "rating_request",
        period=str(event.booking_id),
        payload={"booking_id": event.booking_id, "benefit_code": event.benefit_code},
        due_at=event.at + dt.timedelta(hours=RATING_REQUEST_DELAY_HOURS.value()),
    )


LOW_RATING_REASON = "low_rating"


@events.within_transaction(BookingRatedLow)
def call_back_after_a_low_rating(event: BookingRatedLow) -> None:
    """A rating of 2 or lower opens one customer-service callback task for that booking."""
    callbacks.open_task(event.member_id, LOW_RATING_REASON, str(event.booking_id))


#: Milestones a referrer hears about; a cancelled order is not announced (its reward is clawed back).
ANNOUNCED_MILESTONES = ("lead", "test_drive", "order", "delivery")


@events.within_transaction(ReferralMilestoneReached)
def tell_the_referrer_of_a_milestone(event: ReferralMilestoneReached) -> None:
    """The friend (shown masked when sent) reached a milestone: once per referral and milestone."""
    if event.milestone in ANNOUNCED_MILESTONES:
        _tell_the_referrer(event, "referral_milestone", referee_member_id=event.referee_member_id)


def _tell_the_referrer(event: ReferralMilestoneReached | ReferralRewardCredited, kind: str, **facts: int | str) -> None:
    """One notice of ``kind`` per referral and milestone."""
    notify.queue(
        event.referrer_member_id,
        kind,
        period=f"{event.referral_id}:{event.milestone}",
        payload={"referral_id": event.referral_id, "milestone": event.milestone, **facts},
    )


def _referral_points_available_at(referral_id: int, member_id: int) -> dt.datetime | None:
    """When the referral's still pending points become spendable (None: spendable already)."""
    return db.session.scalar(
        sa.select(sa.func.max(PointLot.available_at))
        .join(PointEntry, PointEntry.id == PointLot.entry_id)
        .where(
            PointEntry.source_ref == f"referral:{referral_id}",  # referrals' ``rewards.ref_of``
            PointEntry.member_id == member_id,
            PointLot.status.in_(("pending", "held")),
        )
    )


@events.within_transaction(ReferralRewardCredited)
def tell_the_referrer_of_a_reward(event: ReferralRewardCredited) -> None:
    """Points credited for a referral milestone, and from when they can be spent (the delivery
    reward waits out the cooling period): once per referral and milestone."""
    if event.reward_points <= 0:
        return
    available_at = _referral_points_available_at(event.referral_id, event.referrer_member_id)
    _tell_the_referrer(
        event,
        "referral_reward",
        reward_points=event.reward_points,
        available_at=(available_at or event.at).isoformat(),
    )
