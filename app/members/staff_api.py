"""Staff mode of the mini-app: bind with an invite, my enrollment QR, my figures, scan a member code."""

from __future__ import annotations

from typing import Any

from flask import g

from app.api.auth import BEARER, per_user_limit, signed_in, staff_required
from app.benefits import booking
from app.benefits.api import booking_json
from app.campaigns import qrcodes
from app.campaigns.api import QrCodeSchema, as_qr_json
from app.core.http import Blueprint
from app.dealers.models import Staff
from app.members import staff_mode
from app.members.api import vehicle_json
from app.members.identifiers import mask_name, mask_phone
from app.members.staff_schemas import (
    EnrollmentFiguresSchema,
    MemberCardSchema,
    MonthArgs,
    ScanArgs,
    StaffBindArgs,
    StaffSchema,
)
from app.points import queries
from app.tiers import policy as tiers
from app.tiers.display import tier_highlights, tier_name

blp = Blueprint("staff_mode", __name__, url_prefix="/api/v1/staff", description="Mini-app: staff mode")


def _staff(staff: Staff) -> dict[str, Any]:
    return {
        "staff_code": staff.staff_code,
        "name": staff.name,
        "role": staff.role,
        "dealer_code": staff.dealer.code,
        "dealer_name": staff.dealer.name,
    }


@blp.route("/binding", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(StaffBindArgs)
@blp.response(201, StaffSchema)
@blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
@signed_in
@per_user_limit("10/hour")
def bind(args: dict[str, Any]) -> dict[str, Any]:
    """Enter the one-time invite code your dealer's member manager gave you."""
    return _staff(staff_mode.bind(g.identity, args["invite_code"]))


@blp.route("/me")
@blp.doc(security=BEARER)
@blp.response(200, StaffSchema)
@staff_required
def me() -> dict[str, Any]:
    return _staff(g.staff)


@blp.route("/me/enrollment-qr")
@blp.doc(security=BEARER)
@blp.response(200, QrCodeSchema)
@staff_required
def my_qr() -> dict[str, Any]:
    """Your personal enrollment QR: a newcomer who scans it joins with you as their advisor."""
    return as_qr_json(qrcodes.for_advisor(g.staff))


@blp.route("/me/enrollments")
@blp.doc(security=BEARER)
@blp.arguments(MonthArgs, location="query")
@blp.response(200, EnrollmentFiguresSchema)
@staff_required
def my_enrollments(args: dict[str, Any]) -> dict[str, Any]:
    """Members you enrolled this month, how many activated within 30 days, and your target."""
    return staff_mode.enrollment_figures(g.staff, args.get("month"))


@blp.route("/scans", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ScanArgs)
@blp.response(200, MemberCardSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
@staff_required
@per_user_limit("120/minute")
def scan(args: dict[str, Any]) -> dict[str, Any]:
    """Scan a member's code at the counter: their masked card, tier, cars and benefits (audited).
    A booking due here today (or the one named) is checked in: the benefit is delivered."""
    member = staff_mode.scan_member_code(g.staff, args["code"])
    checked_in = booking.check_in(g.staff, member, args.get("booking_id"))
    tier = tiers.current_tier(member.id)
    return {
        "member_no": member.member_no,
        "name": mask_name(member.name),
        "phone": mask_phone(member.phone),
        "status": member.status,
        "tier": tier,
        "tier_name": tier_name(tier),
        "available_points": queries.balance(member.id).available,
        "vehicles": [vehicle_json(o) for o in member.ownerships if o.ended_on is None],
        "benefits": tier_highlights(tier),
        "checked_in": booking_json(checked_in, member.locale) if checked_in else None,
        "bookings": [booking_json(b, member.locale) for b in booking.open_at_dealer(member.id, g.staff.dealer_id)],
    }
