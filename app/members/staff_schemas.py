"""Staff mode of the mini-app and the back office's staff invites and vehicle claims."""

from __future__ import annotations

import marshmallow as ma

from app.benefits.schemas import BookingSchema
from app.core.schemas import BaseSchema, Length, Month, Range
from app.members.schemas import VehicleSchema


class StaffBindArgs(BaseSchema):
    invite_code = ma.fields.String(required=True, validate=Length(min=4, max=16))


class StaffSchema(ma.Schema):
    staff_code = ma.fields.String()
    name = ma.fields.String()
    role = ma.fields.String()
    dealer_code = ma.fields.String()
    dealer_name = ma.fields.String()


class MonthArgs(ma.Schema):
    month = Month(
        metadata={
            "description": "YYYY-MM; default the current month",
            "type": "string",
            "pattern": "^20\\d\\d-(0[1-9]|1[0-2])$",
        }
    )


class EnrollmentFiguresSchema(ma.Schema):
    month = ma.fields.String()
    enrolled = ma.fields.Integer()
    activated_within_30_days = ma.fields.Integer()
    activation_rate = ma.fields.Float()
    target = ma.fields.Integer()
    target_progress = ma.fields.Float(allow_none=True)


class ScanArgs(BaseSchema):
    code = ma.fields.String(required=True, validate=Length(min=1, max=128))
    booking_id = ma.fields.Integer(
        load_default=None,
        allow_none=True,
        validate=Range(min=1, max=2**63 - 1),
        metadata={"description": "Check in this booking; without it, the member's only booking due here today"},
    )


class MemberCardSchema(ma.Schema):
    member_no = ma.fields.String()
    name = ma.fields.String(allow_none=True, metadata={"description": "Masked"})
    phone = ma.fields.String(allow_none=True, metadata={"description": "Masked"})
    status = ma.fields.String()
    tier = ma.fields.String()
    tier_name = ma.fields.String()
    available_points = ma.fields.Integer()
    vehicles = ma.fields.List(ma.fields.Nested(VehicleSchema))
    benefits = ma.fields.List(ma.fields.String())
    checked_in = ma.fields.Nested(
        BookingSchema, allow_none=True, metadata={"description": "The booking delivered by this scan"}
    )
    bookings = ma.fields.List(ma.fields.Nested(BookingSchema), metadata={"description": "Open bookings at your dealer"})


class InviteSchema(ma.Schema):
    staff_code = ma.fields.String()
    invite_code = ma.fields.String()
    expires_at = ma.fields.DateTime()


class ClaimReviewSchema(ma.Schema):
    """A claim in the back-office queue (``vehicle_claims.ClaimInReview``). Never sent to members:
    it counts other members' claims on the car."""

    id = ma.fields.Integer(attribute="claim.id")
    vin = ma.fields.String(attribute="claim.vin")
    plate = ma.fields.String(attribute="claim.plate", allow_none=True)
    status = ma.fields.String(attribute="claim.status")
    created_at = ma.fields.DateTime(attribute="claim.created_at")
    dealer_id = ma.fields.Integer(
        attribute="claim.dealer_id", allow_none=True, metadata={"description": "The dealer it is routed to"}
    )
    escalated = ma.fields.Boolean(
        attribute="claim.escalated", metadata={"description": "Over the car's cap of claimants: HQ reviews it"}
    )
    competing_claims = ma.fields.Integer(
        attribute="competing", metadata={"description": "Other members' pending claims on this car"}
    )


class ClaimDecisionArgs(BaseSchema):
    model_code = ma.fields.String(validate=Length(min=1, max=32))
    model_name = ma.fields.String(validate=Length(min=1, max=64))
    model_year = ma.fields.Integer(strict=True, validate=Range(min=1990, max=2100))
    note = ma.fields.String(validate=Length(max=255))


class MemberSearchArgs(BaseSchema):
    """A phone number goes in the body, never in a path (paths reach access logs)."""

    phone = ma.fields.String(required=True, validate=Length(min=1, max=32))
    reason = ma.fields.String(
        required=True, validate=Length(min=1, max=255), metadata={"description": "Why you look (audited)"}
    )


class MemberFoundSchema(ma.Schema):
    member_no = ma.fields.String(metadata={"description": "Use it in paths: /api/v1/cs/members/{member_no}/…"})
    status = ma.fields.String()
    name = ma.fields.String(allow_none=True, metadata={"description": "masked"})
    phone = ma.fields.String(allow_none=True, metadata={"description": "masked"})


class ReasonArgs(BaseSchema):
    reason = ma.fields.String(
        required=True, validate=Length(min=1, max=255), metadata={"description": "Why (kept in the audit log)"}
    )
