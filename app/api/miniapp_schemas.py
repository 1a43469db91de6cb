"""Request and response schemas of the mini-app API (members and staff mode)."""

from __future__ import annotations

import marshmallow as ma

from app.api.cs_schemas import BalanceSchema, TierSchema
from app.core.schemas import BaseSchema, Length, Month, OneOf, PageArgs, Range
from app.members.models import GENDERS

PURPOSES = ("service_notifications", "marketing", "dealer_sharing")
LOCALES = ("zh_CN", "en")

# --- sessions and registration --------------------------------------------------------------


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


# --- consent and profile --------------------------------------------------------------------


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
        metadata={"description": "Changes still allowed once the birthday is set (setting it the first time is free)"}
    )
    city = ma.fields.String(allow_none=True)
    locale = ma.fields.String()
    phone = ma.fields.String(allow_none=True, metadata={"description": "Masked"})


class ProfileArgs(BaseSchema):
    name = ma.fields.String(validate=Length(min=1, max=64))
    gender = ma.fields.String(validate=OneOf(GENDERS))
    birthday = ma.fields.Date()
    city = ma.fields.String(validate=Length(min=1, max=64))
    locale = ma.fields.String(validate=OneOf(LOCALES))


class PhoneArgs(BaseSchema):
    phone_code = ma.fields.String(required=True, validate=Length(min=1, max=128))


# --- vehicles -------------------------------------------------------------------------------


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


class BindingSchema(ma.Schema):
    outcome = ma.fields.String(metadata={"description": "bound, or pending (a dealer verifies the car)"})
    vehicle = ma.fields.Nested(VehicleSchema, allow_none=True)
    claim = ma.fields.Nested(ClaimSchema, allow_none=True)


# --- points, code, subscriptions, dealers ---------------------------------------------------


class MemberBalanceSchema(BalanceSchema):
    pass


class MemberHistoryArgs(PageArgs):
    currency = ma.fields.String(validate=OneOf(("reward", "tier")))


class MemberTierSchema(TierSchema):
    tier_name = ma.fields.String()
    next_tier_name = ma.fields.String(allow_none=True)
    highlights = ma.fields.List(ma.fields.String())


class MemberCodeSchema(ma.Schema):
    code = ma.fields.String()
    expires_in = ma.fields.Integer(metadata={"description": "seconds; show a new code after that"})
    image = ma.fields.String(metadata={"description": "data:image/png;base64,…"})


class SubscriptionArgs(BaseSchema):
    request_id = ma.fields.String(
        required=True,
        validate=Length(min=8, max=64),
        metadata={"description": "A fresh id per wx.requestSubscribeMessage call; resending it changes nothing"},
    )
    results = ma.fields.Dict(
        keys=ma.fields.String(validate=Length(min=1, max=64)),
        values=ma.fields.String(validate=OneOf(("accept", "reject", "ban", "filter"))),
        required=True,
        validate=Length(min=1, max=3),
        metadata={"description": "The result object of wx.requestSubscribeMessage: template id → decision (≤ 3)"},
    )


class GrantSchema(ma.Schema):
    template_id = ma.fields.String()
    available = ma.fields.Integer()
    last_decision = ma.fields.String()


class DealerQueryArgs(PageArgs):
    city = ma.fields.String(validate=Length(max=64))
    region = ma.fields.String(validate=Length(max=32))


class DealerSchema(ma.Schema):
    code = ma.fields.String()
    name = ma.fields.String()
    region = ma.fields.String()
    city = ma.fields.String()
    address = ma.fields.String(allow_none=True)
    phone = ma.fields.String(allow_none=True)
    latitude = ma.fields.Float(allow_none=True)
    longitude = ma.fields.Float(allow_none=True)
    distance_km = ma.fields.Float(allow_none=True)


class DealerPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(DealerSchema))
    page = ma.fields.Integer()
    per_page = ma.fields.Integer()
    total = ma.fields.Integer()


class NearestArgs(ma.Schema):
    latitude = ma.fields.Float(required=True, validate=Range(min=-90, max=90))
    longitude = ma.fields.Float(required=True, validate=Range(min=-180, max=180))
    limit = ma.fields.Integer(load_default=3, validate=Range(min=1, max=20))


# --- staff mode -----------------------------------------------------------------------------


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


class InviteSchema(ma.Schema):
    staff_code = ma.fields.String()
    invite_code = ma.fields.String()
    expires_at = ma.fields.DateTime()


class ClaimDecisionArgs(BaseSchema):
    model_code = ma.fields.String(validate=Length(min=1, max=32))
    model_name = ma.fields.String(validate=Length(min=1, max=64))
    model_year = ma.fields.Integer(strict=True, validate=Range(min=1990, max=2100))
    note = ma.fields.String(validate=Length(max=255))
