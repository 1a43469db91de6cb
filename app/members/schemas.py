"""Request and response schemas of the mini-app's member endpoints."""

from __future__ import annotations

import marshmallow as ma

from app.core.schemas import BaseSchema, Length, OneOf
from app.members.models import GENDERS

PURPOSES = ("service_notifications", "marketing", "dealer_sharing")


LOCALES = ("zh_CN", "en")


class LoginArgs(BaseSchema):
    code = ma.fields.String(
        required=True, validate=Length(min=1, max=128), metadata={"description": "The code from wx.login()"}
    )


class MemberSummarySchema(ma.Schema):
    member_no = ma.fields.String()
    status = ma.fields.String()
    tier = ma.fields.String()
    locale = ma.fields.String()


class SessionOutSchema(ma.Schema):
    token = ma.fields.String(metadata={"description": "Send as Authorization: Bearer <token>"})
    expires_at = ma.fields.DateTime()
    member = ma.fields.Nested(MemberSummarySchema, allow_none=True)
    needs_registration = ma.fields.Boolean()
    needs_consent = ma.fields.Boolean()
    current_policy_version = ma.fields.String()
    is_staff = ma.fields.Boolean()


class RegistrationArgs(BaseSchema):
    policy_version = ma.fields.String(
        required=True,
        validate=Length(min=1, max=16),
        metadata={"description": "The privacy policy version the member accepted"},
    )
    purposes = ma.fields.List(ma.fields.String(validate=OneOf(PURPOSES)), load_default=list)
    phone_code = ma.fields.String(
        required=True,
        validate=Length(min=1, max=128),
        metadata={"description": "The code from the getPhoneNumber button"},
    )


class RegistrationOutSchema(ma.Schema):
    member = ma.fields.Nested(MemberSummarySchema)
    joined_existing = ma.fields.Boolean(metadata={"description": "A purchase-enrolled membership was activated"})
    credited_points = ma.fields.Integer()


class MeSchema(ma.Schema):
    member = ma.fields.Nested(MemberSummarySchema, allow_none=True)
    needs_registration = ma.fields.Boolean()
    needs_consent = ma.fields.Boolean()
    current_policy_version = ma.fields.String()
    is_staff = ma.fields.Boolean()


class ConsentsSchema(ma.Schema):
    accepted_policy_version = ma.fields.String(allow_none=True)
    current_policy_version = ma.fields.String()
    purposes = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Boolean())


class PurposesArgs(BaseSchema):
    purposes = ma.fields.List(ma.fields.String(validate=OneOf(PURPOSES)), required=True)
    policy_version = ma.fields.String(
        validate=Length(max=32),
        metadata={"description": "Send the current version to accept it (required while needs_consent is true)"},
    )


class WithdrawArgs(BaseSchema):
    confirm = ma.fields.Boolean(
        required=True,
        validate=ma.validate.Equal(True),
        metadata={"description": "Withdrawing erases personal data and closes the membership"},
    )


class ProfileSchema(ma.Schema):
    member_no = ma.fields.String()
    name = ma.fields.String(allow_none=True)
    gender = ma.fields.String(allow_none=True)
    birthday = ma.fields.Date(allow_none=True)
    birthday_changes_left = ma.fields.Integer(
        allow_none=True,
        metadata={"description": "Changes still allowed; null until the birthday is first set (which is free)"},
    )
    city = ma.fields.String(allow_none=True)
    address = ma.fields.String(allow_none=True, metadata={"description": "Home address, in full (the member's own)"})
    preferred_dealer = ma.fields.String(
        allow_none=True,
        metadata={
            "description": "Code of the open dealer the member prefers (kept by the CRM): the default for slots"
            " and for a booking that names no dealer"
        },
    )
    locale = ma.fields.String()
    phone = ma.fields.String(allow_none=True, metadata={"description": "Masked"})


class ProfileArgs(BaseSchema):
    name = ma.fields.String(validate=Length(min=1, max=64))
    gender = ma.fields.String(validate=OneOf(GENDERS))
    birthday = ma.fields.Date()
    city = ma.fields.String(validate=Length(min=1, max=64))
    address = ma.fields.String(
        allow_none=True,
        validate=Length(min=1, max=200),
        metadata={"description": "Home address (null clears it); the household self-referral check compares it"},
    )
    locale = ma.fields.String(validate=OneOf(LOCALES))


class PhoneArgs(BaseSchema):
    phone_code = ma.fields.String(required=True, validate=Length(min=1, max=128))


class VehicleSchema(ma.Schema):
    vin = ma.fields.String()
    model = ma.fields.String()
    model_year = ma.fields.Integer(allow_none=True)
    plate = ma.fields.String(allow_none=True)
    role = ma.fields.String()
    since = ma.fields.Date()


class ClaimSchema(ma.Schema):
    id = ma.fields.Integer()
    vin = ma.fields.String()
    status = ma.fields.String()
    created_at = ma.fields.DateTime()
    note = ma.fields.String(allow_none=True)


class VehiclesSchema(ma.Schema):
    vehicles = ma.fields.List(ma.fields.Nested(VehicleSchema))
    claims = ma.fields.List(ma.fields.Nested(ClaimSchema))


class BindVehicleArgs(BaseSchema):
    vin = ma.fields.String(required=True, validate=Length(min=1, max=32))
    plate = ma.fields.String(validate=Length(min=1, max=16))
    dealer_code = ma.fields.String(
        validate=Length(min=1, max=16),
        metadata={"description": "The dealer that should verify the car (default: its selling dealer)"},
    )


class BindingSchema(ma.Schema):
    outcome = ma.fields.String(metadata={"description": "bound, or pending (a dealer verifies the car)"})
    vehicle = ma.fields.Nested(VehicleSchema, allow_none=True)
    claim = ma.fields.Nested(ClaimSchema, allow_none=True)


class MemberCodeSchema(ma.Schema):
    code = ma.fields.String()
    expires_in = ma.fields.Integer(metadata={"description": "seconds; show a new code after that"})
    image = ma.fields.String(metadata={"description": "data:image/png;base64,…"})
