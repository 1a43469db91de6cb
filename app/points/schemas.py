"""Balances, ledger history, adjustments and deductions (mini-app and back office)."""

from __future__ import annotations

import marshmallow as ma

from app.core.schemas import Length, OneOf, PageArgs, Range, identifier
from app.tiers.schemas import TierSchema


class ReadReasonArgs(ma.Schema):
    reason = ma.fields.String(validate=Length(max=255), metadata={"description": "Why you look (audited)"})


class BalanceSchema(ma.Schema):
    member_no = ma.fields.String()
    available = ma.fields.Integer()
    pending = ma.fields.Integer()
    debt = ma.fields.Integer()
    tier_points = ma.fields.Integer()
    expiring_30_days = ma.fields.Integer()
    expiring_90_days = ma.fields.Integer()
    next_expiry_on = ma.fields.DateTime(allow_none=True)
    next_expiry_points = ma.fields.Integer()
    lifetime_earned = ma.fields.Integer()
    lifetime_spent = ma.fields.Integer()
    lifetime_expired = ma.fields.Integer()


class MemberBalanceSchema(BalanceSchema):
    pass


class MemberPointsSchema(ma.Schema):
    balance = ma.fields.Nested(BalanceSchema)
    tier = ma.fields.Nested(TierSchema)


class LotSchema(ma.Schema):
    status = ma.fields.String()
    remaining = ma.fields.Integer()
    available_at = ma.fields.DateTime(allow_none=True)
    expires_at = ma.fields.DateTime()


class EntrySchema(ma.Schema):
    id = ma.fields.Integer()
    currency = ma.fields.String()
    kind = ma.fields.String()
    points = ma.fields.Integer()
    source_type = ma.fields.String()
    source_ref = ma.fields.String(allow_none=True)
    rule_code = ma.fields.String(allow_none=True)
    reason_code = ma.fields.String(allow_none=True)
    occurred_at = ma.fields.DateTime()
    created_at = ma.fields.DateTime()
    reverses_entry_id = ma.fields.Integer(allow_none=True)
    lot = ma.fields.Nested(LotSchema, allow_none=True)


class HistoryArgs(PageArgs):
    currency = ma.fields.String(validate=ma.validate.OneOf(("reward", "tier")))
    reason = ma.fields.String(validate=Length(max=255))


class MemberHistoryArgs(PageArgs):
    currency = ma.fields.String(validate=OneOf(("reward", "tier")))


class HistoryPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(EntrySchema))
    page = ma.fields.Integer()
    per_page = ma.fields.Integer()
    total = ma.fields.Integer()


class AdjustmentArgs(ma.Schema):
    points = ma.fields.Integer(required=True, strict=True, validate=Range(min=-10_000_000, max=10_000_000))
    reason_code = ma.fields.String(required=True, validate=Length(min=1, max=32))
    note = ma.fields.String(required=True, validate=Length(min=1, max=255))
    request_id = ma.fields.String(required=True, validate=identifier(64))


class AdjustmentSchema(ma.Schema):
    id = ma.fields.Integer()
    member_id = ma.fields.Integer()
    points = ma.fields.Integer()
    reason_code = ma.fields.String()
    note = ma.fields.String()
    status = ma.fields.String()
    requested_by = ma.fields.String()
    requested_at = ma.fields.DateTime()
    decided_by = ma.fields.String(allow_none=True)
    decided_at = ma.fields.DateTime(allow_none=True)
    entry_id = ma.fields.Integer(allow_none=True)


class DeductionArgs(ma.Schema):
    points = ma.fields.Integer(required=True, strict=True, validate=Range(min=1, max=10_000_000))
    request_id = ma.fields.String(required=True, validate=identifier(64))
    purpose = ma.fields.String(required=True, validate=Length(min=1, max=255))
    dealer_code = ma.fields.String(validate=Length(max=16), metadata={"description": "Operators only"})


class DeductionSchema(ma.Schema):
    entry_id = ma.fields.Integer()
    points = ma.fields.Integer()
    available = ma.fields.Integer()
    duplicate = ma.fields.Boolean()
