"""Tier progress and members at risk."""

from __future__ import annotations

import marshmallow as ma

from app.core.schemas import Range


class TierSchema(ma.Schema):
    tier = ma.fields.String()
    tier_points = ma.fields.Integer()
    next_tier = ma.fields.String(allow_none=True)
    points_to_next = ma.fields.Integer(allow_none=True)
    review_on = ma.fields.Date(allow_none=True)
    at_risk = ma.fields.Boolean()
    keeps_tier_by = ma.fields.List(ma.fields.String())


class MemberTierSchema(TierSchema):
    tier_name = ma.fields.String()
    next_tier_name = ma.fields.String(allow_none=True)
    highlights = ma.fields.List(ma.fields.String())


class AtRiskArgs(ma.Schema):
    within_days = ma.fields.Integer(load_default=30, validate=Range(min=1, max=366))


class AtRiskSchema(ma.Schema):
    member_no = ma.fields.String()
    tier = ma.fields.String()
    review_on = ma.fields.Date()
    last_qualifying_at = ma.fields.DateTime(allow_none=True)
