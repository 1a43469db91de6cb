"""The member's 1–5 rating of a delivered benefit: once per booking; 2 or lower is announced
(``BookingRatedLow``) so customer service calls the member back."""

from __future__ import annotations

from app.benefits.booking import get_for_member
from app.benefits.models import Booking
from app.core import events
from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import Conflict
from app.core.events import BookingRatedLow
from app.core.i18n import _l
from app.members.models import Member

#: A rating at or below this asks for a customer-service callback (SPEC §5).
LOW_RATING = 2


class NotDelivered(Conflict):
    code = "not_delivered"
    default_message = _l("You can rate a benefit once it has been delivered.")


class AlreadyRated(Conflict):
    code = "already_rated"
    default_message = _l("You have already rated this booking.")


def rate(member: Member, booking_id: int, rating: int, comment: str | None = None) -> Booking:
    """Record the rating of the member's delivered booking; the same rating again is a resend."""
    booking = get_for_member(member.id, booking_id, lock=True)
    if booking.status != "delivered":
        raise NotDelivered()
    if booking.rating is not None:
        if booking.rating == rating and booking.rating_comment == comment:
            return booking
        raise AlreadyRated()
    now = utcnow()
    booking.rating, booking.rating_comment, booking.rated_at = rating, comment, now
    db.session.flush()
    if rating <= LOW_RATING:
        events.publish(BookingRatedLow(member.id, booking.id, rating, now))
    return booking
