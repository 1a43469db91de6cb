"""Enrollment QR codes for advisors and buyers (back office; advisors get theirs in staff mode)."""

from __future__ import annotations

import base64
from typing import Any

import marshmallow as ma
from flask import Response

from app.campaigns import qrcodes
from app.core.http import Blueprint
from app.core.schemas import BaseSchema, Length
from app.members.access import order_token_for_operator
from app.operators.access import staff_for
from app.operators.auth import current_operator, require_operator

blp = Blueprint("enrollment_qr", __name__, url_prefix="/api/v1/cs", description="Back office: enrollment QR codes")
BEARER = [{"bearerAuth": []}]
ROLES = ("dealer_manager", "operator", "supervisor")


class QrCodeSchema(ma.Schema):
    scene = ma.fields.String()
    url = ma.fields.String(metadata={"description": "What the QR code contains"})
    expires_at = ma.fields.DateTime(allow_none=True)
    permanent = ma.fields.Boolean()
    image = ma.fields.String(metadata={"description": "data:image/png;base64,…"})


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
    return as_qr_json(qrcodes.for_advisor(staff_for(current_operator(), staff_code)))


@blp.route("/staff/<staff_code>/enrollment-qr.png")
@blp.doc(security=BEARER, responses={200: {"description": "PNG", "content": {"image/png": {}}}})
@require_operator(*ROLES)
def advisor_qr_png(staff_code: str) -> Response:
    code = qrcodes.for_advisor(staff_for(current_operator(), staff_code))
    return Response(qrcodes.png(code), mimetype="image/png", headers={"Cache-Control": "private, max-age=300"})


class HandOverArgs(BaseSchema):
    reason = ma.fields.String(
        required=True, validate=Length(min=1, max=255), metadata={"description": "Why (kept in the audit log)"}
    )


@blp.route("/members/<member_no>/enrollment-qr", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(HandOverArgs)
@blp.response(200, QrCodeSchema)
@blp.alt_response(404, response="NOT_FOUND")
@require_operator(*ROLES)
def order_qr(args: dict[str, Any], member_no: str) -> dict[str, Any]:
    """The order enrollment QR of a pre-enrolled buyer: scanning it activates the membership and
    releases its held points, so handing it over needs a reason and is audited."""
    token = order_token_for_operator(current_operator(), member_no, reason=args["reason"])
    return as_qr_json(qrcodes.for_order_token(token))
