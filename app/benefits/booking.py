"""Booking a benefit: take the slot and the quota (or the points) in one transaction, exactly once.

``book`` inserts the booking first (unique on member and request id: a resend, even a concurrent
one, returns the first booking), then takes the quota under the holder's lock (or spends points
through the ledger under its own key), then a seat by a conditional UPDATE. Any refusal raises and
the edge rolls everything back. Lock order: booking row, quota lock / point account, slot rows.

``cancel`` until the cut-off (program setting, 24 h) restores the quota or the points; later it
is recorded as a late cancellation. Customer service cancels on the member's behalf with
``cancel_on_behalf`` (a reason, audited): HQ agents and supervisors may waive the cut-off (the
quota or points come back as if in time); a dealer manager cancels only bookings at their own
dealer and never waives. A reschedule is a cancel and a booking in one transaction.
Check-in (staff scanned the member code) delivers the booking; a job marks no-shows after the slot.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from app.benefits import availability, catalog, entitlements, slots
from app.benefits.availability import Offer
from app.benefits.entitlements import Holder
from app.benefits.models import Benefit, BenefitShare, Booking, DealerSlot
from app.core import audit, events, tunables
from app.core.clock import business_today, utcnow
from app.core.db import adopt_inserted, db, insert_if_absent
from app.core.errors import AppError, Conflict, Forbidden, NotFound, ValidationFailed
from app.core.events import BenefitUsed, BookingCancelled, BookingConfirmed
from app.core.i18n import _l
from app.dealers.models import Dealer, Staff
from app.dealers.services import dealer_by_code
from app.jobs import job
from app.members import profile
from app.members.models import Member
from app.operators.access import may_act_for_dealer
from app.operators.models import Operator
from app.points import ledger
from app.tiers.policy import current_tier

CANCEL_CUTOFF_HOURS = tunables.define(
    "benefits.cancel_cutoff_hours", 24, "Hours before a slot until which a cancel restores quota or points"
)
NO_SHOW_GRACE_MINUTES = tunables.define(
    "benefits.no_show_grace_minutes", 30, "Minutes after a slot ends before an open booking is a no-show"
)


class BenefitUnavailable(Conflict):
    code = "benefit_unavailable"
    default_message = _l("You cannot use this benefit now.")


class QuotaUsedUp(Conflict):
    code = "quota_used_up"
    default_message = _l("You have used all of this benefit for this membership year.")


class BookingClosed(Conflict):
    code = "booking_closed"
    default_message = _l("This booking is no longer open.")


class ShareInUse(Conflict):
    code = "share_in_use"
    default_message = _l("This shared benefit is already booked.")


class RequestIdReused(Conflict):
    code = "request_id_reused"
    default_message = _l("This request id was already used for a different booking.")


@dataclass(frozen=True)
class Booked:
    booking: Booking
    new: bool


def find(member_id: int, request_id: str) -> Booking | None:
    return db.session.scalar(sa.select(Booking).where(Booking.member_id == member_id, Booking.request_id == request_id))


def get_for_member(member_id: int, booking_id: int, *, lock: bool = False) -> Booking:
    query = sa.select(Booking).where(Booking.id == booking_id, Booking.member_id == member_id)
    if lock:  # re-read under the lock: a copy loaded earlier in this session may be stale
        query = query.with_for_update().execution_options(populate_existing=True)
    booking = db.session.scalar(query)
    if booking is None:
        raise NotFound()
    return booking


def for_member(member_id: int, limit: int = 50) -> list[Booking]:
    return list(
        db.session.scalars(
            sa.select(Booking)
            .where(Booking.member_id == member_id)
            .order_by(Booking.created_at.desc(), Booking.id.desc())
            .limit(limit)
        )
    )


def history(member_id: int, *, page: int, per_page: int) -> tuple[list[dict], int]:
    """The member's bookings, newest first, with the dealer's name and the slot's start (the member 360)."""
    query = sa.select(Booking).where(Booking.member_id == member_id)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = db.session.execute(
        sa.select(Booking, Dealer.name, DealerSlot.starts_at)
        .outerjoin(Dealer, Dealer.id == Booking.dealer_id)
        .outerjoin(DealerSlot, DealerSlot.id == Booking.slot_id)
        .where(Booking.member_id == member_id)
        .order_by(Booking.created_at.desc(), Booking.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    cutoff = utcnow() + dt.timedelta(hours=CANCEL_CUTOFF_HOURS.value())
    return [
        {
            "id": booking.id,
            "dealer_id": booking.dealer_id,
            "past_cutoff": starts_at is not None and starts_at < cutoff,
            "benefit_code": booking.benefit_code,
            "benefit_name": booking.benefit.name,
            "dealer": dealer_name,
            "slot_at": starts_at,
            "status": booking.status,
            "paid_with": booking.paid_with,
            "points_spent": booking.points_spent,
            "rating": booking.rating,
        }
        for booking, dealer_name, starts_at in rows
    ], total


def upcoming(member_id: int, limit: int = 3) -> list[Booking]:
    """The member's open bookings, soonest first (slotless ones last)."""
    return list(
        db.session.scalars(
            sa.select(Booking)
            .outerjoin(DealerSlot, DealerSlot.id == Booking.slot_id)
            .where(Booking.member_id == member_id, Booking.status == "booked")
            .order_by(DealerSlot.starts_at.asc().nulls_last(), Booking.id)
            .limit(limit)
        )
    )


def _same_request(existing: Booking, benefit_code: str, slot_id: int | None) -> Booking:
    if existing.benefit_code != benefit_code or existing.slot_id != slot_id:
        raise RequestIdReused()
    return existing


def _bookable_slot(benefit: Benefit, slot_id: int | None, now: dt.datetime) -> DealerSlot | None:
    if not benefit.needs_slot:
        if slot_id is not None:
            raise ValidationFailed(fields={"slot": [_l("This benefit is used without a time slot.")]})
        return None
    slot = (
        db.session.get(DealerSlot, slot_id, options=[sa.orm.joinedload(DealerSlot.dealer)])
        if slot_id is not None
        else None
    )
    if slot is None:
        raise ValidationFailed(fields={"slot": [_l("Choose an available time slot.")]})
    if slot.service_type != benefit.service_type:
        raise ValidationFailed(fields={"slot": [_l("This time slot is for another service.")]})
    if slot.starts_at <= now:
        raise ValidationFailed(fields={"slot": [_l("This time slot has already started.")]})
    return slot


def _dealer_id(member: Member, benefit: Benefit, slot: DealerSlot | None, dealer_code: str | None) -> int | None:
    """The dealer that delivers: the slot's, or (no slot) the one named, else for a dealer benefit
    the member's preferred dealer while it is open; a dealer benefit needs one."""
    if slot is not None:
        return slot.dealer_id
    if dealer_code is None:
        preferred = profile.preferred_dealer(member) if benefit.delivered_by == "dealer" else None
        if preferred is not None and preferred.active:
            return preferred.id
        if benefit.delivered_by == "dealer":
            raise ValidationFailed(fields={"dealer": [_l("Choose the dealer where you will use this benefit.")]})
        return None
    dealer = dealer_by_code(dealer_code)
    if dealer is None or not dealer.active:
        raise ValidationFailed(fields={"dealer": [_l("Unknown dealer code.")]})
    return dealer.id


def _check_offer(member: Member, benefit: Benefit, vehicle_id: int | None) -> Offer:
    if vehicle_id is not None and vehicle_id not in {v.id for v in member.current_vehicles}:
        raise ValidationFailed(fields={"vehicle": [_l("This car is not on your membership.")]})
    # What is left is counted once, under the holder's lock (``_pay``), which raises QuotaUsedUp.
    offer = availability.offer(member, benefit, current_tier(member.id), vehicle_id=vehicle_id, count=False)
    if not offer.usable:
        raise BenefitUnavailable(offer.reason_message, details={"reason": offer.reason})
    return offer


def book(
    member: Member,
    *,
    benefit_code: str,
    request_id: str,
    slot_id: int | None = None,
    vehicle_id: int | None = None,
    dealer_code: str | None = None,
    rescheduled_from: Booking | None = None,
    share_key: str | None = None,
) -> Booked:
    """Book once per ``request_id``: the slot, and the quota or points (or a benefit a friend
    shared, ``share_key``), together or not at all.

    A resend is found by the insert's conflict on (member, request id), not by a read first (one
    statement less per booking); a resend that a check would now refuse (the slot has started, the
    share is in use by this very booking) still answers the booking it made."""
    now = utcnow()
    try:
        benefit, share, offer, slot = _checked(
            member, benefit_code=benefit_code, share_key=share_key, vehicle_id=vehicle_id, slot_id=slot_id, now=now
        )
    except AppError:
        existing = find(member.id, request_id)
        if existing is None:
            raise
        return Booked(_same_request(existing, benefit_code, slot_id), False)
    holder = Holder(member.id, offer.vehicle_id if benefit.binding == "car" else None)
    year_start, _end = entitlements.membership_year(holder)
    values = {
        "member_id": member.id,
        "request_id": request_id,
        "benefit_id": benefit.id,
        "benefit_code": benefit.code,
        "slot_id": slot.id if slot else None,
        "dealer_id": share.dealer_id
        if share is not None and slot is None
        else _dealer_id(member, benefit, slot, dealer_code),
        "vehicle_id": vehicle_id if vehicle_id is not None else offer.vehicle_id,
        "status": "booked",
        "paid_with": offer.pays_with,
        "year_start": year_start,
        "cost_fen": benefit.cost_fen,
        "funder": benefit.funder,
        "rescheduled_from_id": rescheduled_from.id if rescheduled_from else None,
        "created_at": now,
    }
    booking_id = insert_if_absent(Booking, values, ("member_id", "request_id"))
    if booking_id is None:  # a resend: the booking this request id made (a concurrent twin waited for)
        twin = find(member.id, request_id)
        assert twin is not None
        _same_request(twin, benefit_code, slot_id)
        if twin.benefit_id == benefit.id:  # already loaded: the answer needs no second read
            set_committed_value(twin, "benefit", benefit)
        set_committed_value(twin, "slot", slot)
        return Booked(twin, False)
    booking = adopt_inserted(Booking, booking_id, values)  # what was inserted: no read back
    set_committed_value(booking, "benefit", benefit)  # already loaded: the answer needs no second read
    set_committed_value(booking, "slot", slot)
    _pay(booking, benefit, offer, holder, share)
    if slot is not None and not slots.take_seat(slot.id, now=now):
        raise slots.SlotFull()
    events.publish(
        BookingConfirmed(member.id, booking.id, benefit.code, slot.starts_at if slot is not None else None, now)
    )
    return Booked(booking, True)


def _checked(
    member: Member,
    *,
    benefit_code: str,
    share_key: str | None,
    vehicle_id: int | None,
    slot_id: int | None,
    now: dt.datetime,
) -> tuple[Benefit, BenefitShare | None, Offer, DealerSlot | None]:
    """Everything checked before the booking row is written; raises the refusal."""
    benefit = catalog.benefit_in_force(benefit_code, now)
    if benefit is None:
        raise ValidationFailed(fields={"benefit": [_l("Unknown benefit.")]})
    share = _claimed_share(member, benefit, share_key) if share_key is not None else None
    offer = _check_offer(member, benefit, vehicle_id) if share is None else _share_offer(member, benefit)
    slot = _bookable_slot(benefit, slot_id, now)
    if share is not None and slot is not None and slot.dealer_id != share.dealer_id:
        raise ValidationFailed(fields={"slot": [_l("A shared benefit is used at the dealer it was shared for.")]})
    return benefit, share, offer, slot


def _claimed_share(member: Member, benefit: Benefit, key: str) -> BenefitShare:
    """The share of this benefit the member claimed, locked (one booking per share at a time)."""
    share = db.session.scalar(
        sa.select(BenefitShare)
        .where(BenefitShare.key == key, BenefitShare.claimed_by_member_id == member.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if share is None or share.benefit_code != benefit.code:
        raise ValidationFailed(fields={"share": [_l("You have not claimed this shared benefit.")]})
    if share.booking_id is not None:
        raise ShareInUse()
    return share


def _share_offer(member: Member, benefit: Benefit) -> Offer:
    """A claimed share is paid for already: the friend needs no tier or quota, only a membership."""
    if member.status != "active":
        raise BenefitUnavailable(availability.REASONS["member_inactive"], details={"reason": "member_inactive"})
    return Offer(benefit, current_tier(member.id), "share", None, None, None)


def _pay(booking: Booking, benefit: Benefit, offer: Offer, holder: Holder, share: BenefitShare | None) -> None:
    if share is not None:
        share.booking_id = booking.id
    elif offer.pays_with == "points":
        assert benefit.points_price is not None
        ledger.spend(
            booking.member_id,
            benefit.points_price,
            idempotency_key=f"benefit:booking:{booking.id}",
            source_type="benefit_booking",
            source_ref=str(booking.id),
            note=benefit.code,  # no dealer: dealer settlement counts deductions, benefits settle apart
        )
        booking.points_spent = benefit.points_price
    elif entitlements.take(holder, benefit, offer.tier, booking_id=booking.id) is None:
        raise QuotaUsedUp()
    db.session.flush()


def _in_time(booking: Booking, now: dt.datetime) -> bool:
    if booking.slot is None:
        return True
    return now <= booking.slot.starts_at - dt.timedelta(hours=CANCEL_CUTOFF_HOURS.value())


def _give_back(booking: Booking) -> None:
    if booking.paid_with == "points" and booking.points_spent:
        spent = ledger.find_entry(f"benefit:booking:{booking.id}", booking.member_id, "spend")
        assert spent is not None
        ledger.refund(  # back into the lots the booking drained, with their own expiry
            spent,
            booking.points_spent,
            idempotency_key=f"benefit:refund:{booking.id}",
            source_type="benefit_booking",
            source_ref=str(booking.id),
            reason_code="benefit_cancelled",
        )
    elif booking.paid_with == "share":  # the friend may book the shared benefit again
        db.session.execute(sa.update(BenefitShare).where(BenefitShare.booking_id == booking.id).values(booking_id=None))
    elif booking.paid_with in ("quota", "free"):
        holder = Holder(booking.member_id, booking.vehicle_id if booking.benefit.binding == "car" else None)
        entitlements.give_back(holder, booking.benefit_code, booking.year_start, booking_id=booking.id)


def close(booking: Booking, now: dt.datetime, *, waive_cutoff: bool = False) -> str:
    """Cancel a locked open booking: in time (or with the cut-off waived) restores what it took,
    later is only recorded."""
    if booking.status != "booked":
        raise BookingClosed()
    in_time = waive_cutoff or _in_time(booking, now)
    if booking.slot_id is not None:
        slots.release_seat(booking.slot_id)  # someone else may still take it
    if in_time:
        _give_back(booking)
    booking.status = "cancelled" if in_time else "late_cancelled"
    booking.cancelled_at = now
    db.session.flush()
    events.publish(BookingCancelled(booking.member_id, booking.id, now))
    return booking.status


def cancel(member: Member, booking_id: int) -> Booking:
    booking = get_for_member(member.id, booking_id, lock=True)
    close(booking, utcnow())
    return booking


#: Roles that may waive the cut-off when cancelling for a member (HQ customer service).
WAIVERS = ("agent", "supervisor")


def cancel_on_behalf(
    member: Member, booking_id: int, *, operator: Operator, reason: str, waive_cutoff: bool = False
) -> Booking:
    """Customer service cancels the member's open booking (the member asked by phone). Before the
    cut-off it is the member's own cancel; after it, a late cancellation unless an agent or
    supervisor waives the cut-off, which gives the quota or points back. Audited with the reason."""
    reason = reason.strip()
    if not reason or len(reason) > 255:
        raise ValidationFailed(fields={"reason": [_l("Give a reason of at most 255 characters.")]})
    booking = get_for_member(member.id, booking_id, lock=True)
    if not may_act_for_dealer(operator, booking.dealer_id):
        raise NotFound()  # another dealer's booking answers like none
    if waive_cutoff and operator.role not in WAIVERS:
        raise Forbidden(_l("Only customer service may waive the cancellation cut-off."))
    now = utcnow()
    waived = waive_cutoff and not _in_time(booking, now)
    status = close(booking, now, waive_cutoff=waived)
    audit.record(
        actor=("staff", operator.actor),
        action="booking.cancelled_for_member",
        subject=("member", member.id),
        reason=reason,
        details={"booking_id": booking.id, "status": status, "cutoff_waived": waived},
    )
    return booking


def reschedule(member: Member, booking_id: int, *, slot_id: int, request_id: str) -> Booked:
    """Move a booking to another slot: cancel and book in one transaction (both or neither)."""
    existing = find(member.id, request_id)
    if existing is not None and existing.rescheduled_from_id == booking_id:
        return Booked(existing, False)
    old = get_for_member(member.id, booking_id, lock=True)
    existing = find(member.id, request_id)  # a concurrent resend may have finished while we waited
    if existing is not None and existing.rescheduled_from_id == booking_id:
        return Booked(existing, False)
    if old.status != "booked":
        raise BookingClosed()
    if old.slot_id is None:
        raise ValidationFailed(fields={"slot": [_l("This benefit is used without a time slot.")]})
    now = utcnow()
    if not _in_time(old, now):
        raise BookingClosed(_l("It is too late to change this booking."))
    slots.lock_in_order([old.slot_id, slot_id])
    share_key = (
        db.session.scalar(sa.select(BenefitShare.key).where(BenefitShare.booking_id == old.id))
        if old.paid_with == "share"
        else None
    )
    close(old, now)
    return book(
        member,
        benefit_code=old.benefit_code,
        request_id=request_id,
        slot_id=slot_id,
        vehicle_id=old.vehicle_id,
        rescheduled_from=old,
        share_key=share_key,
    )


def open_at_dealer(member_id: int, dealer_id: int) -> list[Booking]:
    """The member's open bookings at a dealer (what staff see after scanning the member code)."""
    return list(
        db.session.scalars(
            sa.select(Booking)
            .where(Booking.member_id == member_id, Booking.dealer_id == dealer_id, Booking.status == "booked")
            .order_by(Booking.id)
        )
    )


CHECK_IN_EARLY = dt.timedelta(hours=1)


def _due_today(booking: Booking) -> bool:
    """Due for check-in: its slot is today's, or the member is there up to an hour early or while the
    slot runs (a slot just after midnight can be checked in before it, one that runs over midnight during it)."""
    slot = booking.slot
    if slot is None or slot.day == business_today():
        return True
    now = utcnow()
    return slot.starts_at - CHECK_IN_EARLY <= now <= slot.ends_at


def check_in(staff: Staff, member: Member, booking_id: int | None = None) -> Booking | None:
    """Deliver a booking of the scanned member at the staff member's dealer: the one named, or the
    only one due today. None when nothing (or more than one) is due and none was named."""
    if booking_id is None:
        due = [b for b in open_at_dealer(member.id, staff.dealer_id) if _due_today(b)]
        if len(due) != 1:
            return None
        booking_id = due[0].id
    booking = db.session.scalar(
        sa.select(Booking).where(Booking.id == booking_id).with_for_update().execution_options(populate_existing=True)
    )
    if booking is None or booking.member_id != member.id or booking.dealer_id != staff.dealer_id:
        raise NotFound(_l("No such booking for this member at your dealer."))
    if booking.status != "booked":
        raise BookingClosed()
    if not _due_today(booking):
        raise BookingClosed(_l("This booking is for another day."))
    now = utcnow()
    booking.status = "delivered"
    booking.delivered_at = now
    booking.delivered_by_staff_id = staff.id
    db.session.flush()
    audit.record(
        actor=("staff", staff.staff_code),
        action="benefit.delivered",
        subject=("booking", booking.id),
        details={"benefit": booking.benefit_code, "cost_fen": booking.cost_fen, "funder": booking.funder},
    )
    events.publish(BenefitUsed(member.id, booking.id, booking.benefit_code, now))
    return booking


def mark_no_shows(now: dt.datetime | None = None, limit: int = 1000) -> int:
    """Open bookings whose slot ended more than the grace period ago become no-shows (quota stays used)."""
    now = now or utcnow()
    cutoff = now - dt.timedelta(minutes=NO_SHOW_GRACE_MINUTES.value())
    rows = db.session.scalars(
        sa.select(Booking)
        .join(DealerSlot, DealerSlot.id == Booking.slot_id)
        .where(Booking.status == "booked", DealerSlot.ends_at < cutoff)
        .order_by(Booking.id)
        .limit(limit)
        .with_for_update(of=Booking, skip_locked=True)
    ).all()
    for booking in rows:
        booking.status = "no_show"
        booking.no_show_at = now
    db.session.flush()
    return len(rows)


@job("periodic")
def record_no_shows() -> int:
    """Every 15 minutes: record no-shows of slots that have ended."""
    return mark_no_shows()


def dealer_of(booking: Booking) -> Dealer | None:
    return db.session.get(Dealer, booking.dealer_id) if booking.dealer_id else None
