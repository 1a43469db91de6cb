"""Input and output shapes of the referral endpoints (mini-app and back office)."""

from __future__ import annotations

import marshmallow as ma

from app.core.schemas import BaseSchema, Length, Month, OneOf, Range
from app.referrals.reviews import DECISIONS


class ReferralClaimArgs(BaseSchema):
    code = ma.fields.String(required=True, validate=Length(min=4, max=16), metadata={"description": "Referral code"})
    device_id = ma.fields.String(validate=Length(max=128), metadata={"description": "The mini-app's device id"})
    dealer_code = ma.fields.String(
        validate=Length(min=1, max=16), metadata={"description": "A dealer the referee chose"}
    )
    latitude = ma.fields.Float(validate=Range(min=-90, max=90), allow_nan=False)
    longitude = ma.fields.Float(validate=Range(min=-180, max=180), allow_nan=False)


class MyReferralsArgs(BaseSchema):
    device_id = ma.fields.String(validate=Length(max=128), metadata={"description": "The mini-app's device id"})


class ReferralRefereeSchema(ma.Schema):
    referral_id = ma.fields.Integer()
    name = ma.fields.String(allow_none=True, metadata={"description": "Masked"})
    phone = ma.fields.String(allow_none=True, metadata={"description": "Masked"})
    milestone = ma.fields.String()
    reward_status = ma.fields.String()
    reward_points = ma.fields.Integer()
    attributed_at = ma.fields.DateTime()
    expires_at = ma.fields.DateTime()
    available_at = ma.fields.DateTime(allow_none=True, metadata={"description": "End of the cooling period"})


class MyReferralsSchema(ma.Schema):
    code = ma.fields.String()
    link = ma.fields.String()
    scene = ma.fields.String(metadata={"description": "The mini-app code's scene (opaque, ≤ 32 characters)"})
    wxacode_url = ma.fields.String()
    rewarded_this_year = ma.fields.Integer()
    yearly_cap = ma.fields.Integer()
    referees = ma.fields.List(ma.fields.Nested(ReferralRefereeSchema))


class ReferralClaimSchema(ma.Schema):
    attributed = ma.fields.Boolean(metadata={"description": "False: an earlier referral already counts"})
    referral_id = ma.fields.Integer()
    dealer_code = ma.fields.String()
    milestone = ma.fields.String()


class ReferralReviewSchema(ma.Schema):
    id = ma.fields.Integer()
    referrer_member_id = ma.fields.Integer()
    referee_member_id = ma.fields.Integer()
    dealer_id = ma.fields.Integer()
    flags = ma.fields.List(ma.fields.String())
    milestone = ma.fields.String()
    reward_status = ma.fields.String()
    review = ma.fields.String()
    attributed_at = ma.fields.DateTime()


class ReferralDecisionArgs(BaseSchema):
    decision = ma.fields.String(required=True, validate=OneOf(DECISIONS))
    reason = ma.fields.String(required=True, validate=Length(min=2, max=255))


class ReferralFunnelArgs(BaseSchema):
    month = Month(required=True, metadata={"description": "First month, YYYY-MM"})
    until = Month(metadata={"description": "Last month, YYYY-MM (default: the first)"})
    dealer_code = ma.fields.String(validate=Length(min=1, max=16))


class ReferralFunnelRowSchema(ma.Schema):
    dealer_code = ma.fields.String()
    month = ma.fields.String()
    leads = ma.fields.Integer()
    test_drives = ma.fields.Integer()
    orders = ma.fields.Integer()
    deliveries = ma.fields.Integer()
    rewarded = ma.fields.Integer()
    reward_points = ma.fields.Integer()
    capped = ma.fields.Integer()
    held = ma.fields.Integer()
    clawed_back = ma.fields.Integer()
    clawed_back_points = ma.fields.Integer()


class ReferralLeadsArgs(BaseSchema):
    month = Month(required=True)
    dealer_code = ma.fields.String(validate=Length(min=1, max=16))


class ReferralLeadSchema(ma.Schema):
    lead_id = ma.fields.Integer()
    name = ma.fields.String(allow_none=True)
    phone = ma.fields.String(allow_none=True)
    milestone = ma.fields.String()
    status = ma.fields.String()
    created_at = ma.fields.DateTime()


class ReferralLeadsSchema(ma.Schema):
    shared = ma.fields.List(ma.fields.Nested(ReferralLeadSchema))
    not_shared = ma.fields.Integer(metadata={"description": "Leads without dealer_sharing consent: only counted"})
