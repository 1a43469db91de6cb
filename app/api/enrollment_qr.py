"""Enrollment QR codes for advisors and buyers (back office; advisors get theirs in staff mode)."""

from __future__ import annotations

import base64
from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from flask import Response

from app.core.db import db
from app.core.errors import Forbidden, NotFound
from app.core.http import Blueprint
from app.core.i18n import _l
from app.dealers.models import Staff
from app.members.services import find_by_member_no, open_enrollment_token
from app.operators.auth import current_operator, require_operator
from app.wechat import qrcodes

blp = Blueprint("enrollment_qr", __name__, url_prefix="/api/v1/cs", description="Enrollment QR codes")
BEARER = [{"bearerAuth": []}]
ROLES = ("dealer_manager", "operator", "supervisor")


class QrCodeSchema(ma.Schema):
    scene = ma.fields.String()
    url = ma.fields.String(metadata={"description": "What the QR code contains"})
    expires_at = ma.fields.DateTime(allow_none=True)
    permanent = ma.fields.Boolean()
    image = ma.fields.String(metadata={"description": "data:image/png;base64,…"})


def _staff(staff_code: str) -> Staff:
    staff = db.session.scalar(sa.select(Staff).where(Staff.staff_code == staff_code, Staff.active))
    if staff is None:
        raise NotFound(_l("No active staff member has this code."))
    operator = current_operator()
    if operator.role == "dealer_manager" and operator.dealer_id != staff.dealer_id:
        raise Forbidden()
    return staff


def as_qr_json(code: Any) -> dict[str, Any]:
    image = "data:image/png;base64," + base64.b64encode(qrcodes.png(code)).decode()
    return {
        "scene": code.scene,
        "url": code.url,
        "expires_at": code.expires_at,
        "permanent": code.permanent,
        "image": image,
    }


@blp.route("/staff/<staff_code>/enrollment-qr")
@blp.doc(security=BEARER)
@blp.response(200, QrCodeSchema)
@require_operator(*ROLES)
def advisor_qr(staff_code: str) -> dict[str, Any]:
    """The advisor's personal enrollment QR (30-day code, renewed automatically)."""
    return as_qr_json(qrcodes.for_advisor(_staff(staff_code)))


@blp.route("/staff/<staff_code>/enrollment-qr.png")
@blp.doc(security=BEARER, responses={200: {"description": "PNG", "content": {"image/png": {}}}})
@require_operator(*ROLES)
def advisor_qr_png(staff_code: str) -> Response:
    code = qrcodes.for_advisor(_staff(staff_code))
    return Response(qrcodes.png(code), mimetype="image/png", headers={"Cache-Control": "private, max-age=300"})


@blp.route("/members/<member_no>/enrollment-qr")
@blp.doc(security=BEARER)
@blp.response(200, QrCodeSchema)
@require_operator(*ROLES)
def order_qr(member_no: str) -> dict[str, Any]:
    """The order enrollment QR of a pre-enrolled buyer: scanning it activates the membership."""
    token = open_enrollment_token(find_by_member_no(member_no))
    if token is None:
        raise NotFound(_l("This member has no open enrollment code."))
    operator = current_operator()
    if operator.role == "dealer_manager" and token.dealer_id != operator.dealer_id:
        raise Forbidden()
    return as_qr_json(qrcodes.for_order_token(token))
