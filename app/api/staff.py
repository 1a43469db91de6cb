"""Staff mode of the mini-app: bind with an invite, my enrollment QR, my figures, scan a member code."""

from __future__ import annotations

from typing import Any

from flask import g

from app.api.enrollment_qr import QrCodeSchema, as_qr_json
from app.api.miniapp import vehicle_json
from app.api.miniapp_auth import BEARER, per_user_limit, signed_in, staff_required
from app.api.miniapp_schemas import (
    EnrollmentFiguresSchema,
    MemberCardSchema,
    MonthArgs,
    ScanArgs,
    StaffBindArgs,
    StaffSchema,
)
from app.core import audit
from app.core.db import db
from app.core.errors import NotFound
from app.core.http import Blueprint
from app.dealers import staff_binding
from app.dealers.models import Dealer, Staff
from app.members import member_code
from app.members.identifiers import mask_name, mask_phone
from app.members.models import Member
from app.points import queries
from app.tiers import policy as tiers
from app.tiers.display import tier_highlights, tier_name
from app.wechat import qrcodes

blp = Blueprint("staff", __name__, url_prefix="/api/v1/staff", description="Mini-app: staff mode")


def _staff(staff: Staff) -> dict[str, Any]:
    dealer = db.session.get(Dealer, staff.dealer_id)
    return {
        "staff_code": staff.staff_code,
        "name": staff.name,
        "role": staff.role,
        "dealer_code": dealer.code if dealer else None,
        "dealer_name": dealer.name if dealer else None,
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
    return _staff(staff_binding.bind(g.identity, args["invite_code"]))


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
    return staff_binding.enrollment_figures(g.staff, args.get("month"))


@blp.route("/scans", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ScanArgs)
@blp.response(200, MemberCardSchema)
@blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
@staff_required
@per_user_limit("120/minute")
def scan(args: dict[str, Any]) -> dict[str, Any]:
    """Scan a member's code at the counter: their masked card, tier, cars and benefits (audited)."""
    member = db.session.get(Member, member_code.verify(args["code"]))
    if member is None or member.status == "closed":
        raise NotFound()
    audit.record(
        actor=("staff", g.staff.staff_code),
        action="member.read",
        subject=("member", member.id),
        reason="member code scanned at the dealer",
    )
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
    }
