"""Mini-app: benefits I can use (and why not), my entitlements, dealer slots, my bookings."""

from __future__ import annotations

from typing import Any

from flask import g

from app.api.auth import BEARER, consented_member_required, member_required, per_user_limit
from app.benefits import availability, booking, catalog, partners, ratings, slots
from app.benefits.availability import Offer
from app.benefits.models import Booking, DealerSlot
from app.benefits.schemas import (
    BookingArgs,
    BookingSchema,
    OfferSchema,
    RatingArgs,
    RescheduleArgs,
    SlotQueryArgs,
    SlotSchema,
)
from app.core.errors import NotFound
from app.core.http import Blueprint
from app.dealers.services import dealer_by_code
from app.tiers.policy import current_tier

blp = Blueprint("benefits", __name__, url_prefix="/api/v1", description="Mini-app: benefits and booking")


def slot_json(slot: DealerSlot | None) -> dict[str, Any] | None:
    if slot is None:
        return None
    return {
        "id": slot.id,
        "service_type": slot.service_type,
        "day": slot.day,
        "starts_at": slot.starts_at,
        "ends_at": slot.ends_at,
        "capacity": slot.capacity,
        "booked": slot.booked,
        "available": max(0, slot.capacity - slot.booked),
    }


def offer_json(offer: Offer, locale: str) -> dict[str, Any]:
    benefit, entitlement = offer.benefit, offer.entitlement
    return {
        "code": benefit.code,
        "name": catalog.localized(benefit.name, locale),
        "description": catalog.localized(benefit.description, locale),
        "needs_slot": benefit.needs_slot,
        "service_type": benefit.service_type,
        "binding": benefit.binding,
        "transferable": benefit.transferable,
        "points_price": benefit.points_price if offer.tier not in benefit.quotas else None,
        "usable": offer.usable,
        "pays_with": offer.pays_with,
        "reason": offer.reason,
        "reason_message": offer.reason_message,
        "entitlement": None
        if entitlement is None
        else {
            "year_start": entitlement.year_start,
            "year_end": entitlement.year_end,
            "quota": entitlement.quota,
            "used": entitlement.used,
            "remaining": entitlement.remaining,
        },
    }


def booking_json(row: Booking, locale: str) -> dict[str, Any]:
    dealer = booking.dealer_of(row)
    return {
        "id": row.id,
        "request_id": row.request_id,
        "benefit": row.benefit_code,
        "benefit_name": catalog.localized(row.benefit.name, locale),
        "status": row.status,
        "paid_with": row.paid_with,
        "points_spent": row.points_spent,
        "slot": slot_json(row.slot),
        "dealer_code": dealer.code if dealer else None,
        "vehicle": row.vehicle_id,
        "created_at": row.created_at,
        "cancelled_at": row.cancelled_at,
        "delivered_at": row.delivered_at,
        "rescheduled_from": row.rescheduled_from_id,
        "rating": row.rating,
        "rated_at": row.rated_at,
        "partner": partner_json(row),
    }


def partner_json(row: Booking) -> dict[str, Any] | None:
    """A partner-delivered benefit's order (read only for those: a dealer booking costs nothing more)."""
    if row.benefit.delivered_by != "partner":
        return None
    order = partners.order_of(row.id)
    if order is None:
        return None
    return {"status": order.status, "service_code": order.service_code, "expires_at": order.code_expires_at}


@blp.route("/benefits")
@blp.doc(security=BEARER)
@blp.response(200, OfferSchema(many=True))
@member_required
def my_catalog() -> list[dict[str, Any]]:
    """Every benefit in the catalog: whether I can use it now, paid how, and if not, why not."""
    offers = availability.offers(g.member, current_tier(g.member.id))
    return [offer_json(o, g.member.locale) for o in offers]


@blp.route("/me/entitlements")
@blp.doc(security=BEARER)
@blp.response(200, OfferSchema(many=True))
@member_required
def my_entitlements() -> list[dict[str, Any]]:
    """What I have left this membership year of each benefit with a quota."""
    offers = availability.offers(g.member, current_tier(g.member.id))
    return [offer_json(o, g.member.locale) for o in offers if o.entitlement is not None]


@blp.route("/dealers/<dealer_code>/slots")
@blp.doc(security=BEARER)
@blp.arguments(SlotQueryArgs, location="query")
@blp.response(200, SlotSchema(many=True))
@blp.alt_response(404, response="NOT_FOUND")
@member_required
def dealer_slots(args: dict[str, Any], dealer_code: str) -> list[dict[str, Any]]:
    """A dealer's slots on a day (optionally of one service type), with the seats left."""
    dealer = dealer_by_code(dealer_code)
    if dealer is None or not dealer.active:
        raise NotFound()
    return [slot_json(s) for s in slots.slots_on(dealer.id, args["day"], args.get("service_type"))]  # type: ignore[misc]


@blp.route("/me/bookings")
@blp.doc(security=BEARER)
@blp.response(200, BookingSchema(many=True))
@member_required
def my_bookings() -> list[dict[str, Any]]:
    return [booking_json(b, g.member.locale) for b in booking.for_member(g.member.id)]


@blp.route("/me/bookings", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(BookingArgs)
@blp.response(201, BookingSchema)
@blp.alt_response(409, response="CONFLICT")
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@consented_member_required
@per_user_limit("30/minute")
def book(args: dict[str, Any]) -> dict[str, Any]:
    """Book a benefit: the slot and the quota (or points) are taken together; a resend with the
    same ``request_id`` returns the same booking."""
    result = booking.book(
        g.member,
        benefit_code=args["benefit"],
        request_id=args["request_id"],
        slot_id=args.get("slot"),
        vehicle_id=args.get("vehicle"),
        dealer_code=args.get("dealer"),
        share_key=args.get("share"),
    )
    return booking_json(result.booking, g.member.locale)


@blp.route("/me/bookings/<id:booking_id>/cancel", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, BookingSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@member_required
def cancel(booking_id: int) -> dict[str, Any]:
    """Cancel: until the cut-off (24 h before) the quota or points come back; later it is recorded."""
    return booking_json(booking.cancel(g.member, booking_id), g.member.locale)


@blp.route("/me/bookings/<id:booking_id>/reschedule", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(RescheduleArgs)
@blp.response(201, BookingSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@consented_member_required
def reschedule(args: dict[str, Any], booking_id: int) -> dict[str, Any]:
    """Move a booking to another slot (before the cut-off): the old one is cancelled in the same step."""
    result = booking.reschedule(g.member, booking_id, slot_id=args["slot"], request_id=args["request_id"])
    return booking_json(result.booking, g.member.locale)


@blp.route("/me/bookings/<id:booking_id>/rating", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(RatingArgs)
@blp.response(200, BookingSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@member_required
def rate(args: dict[str, Any], booking_id: int) -> dict[str, Any]:
    """Rate a delivered benefit 1–5, once (the same rating again is a resend); 2 or lower asks
    customer service to call me back."""
    row = ratings.rate(g.member, booking_id, args["rating"], args.get("comment"))
    return booking_json(row, g.member.locale)
