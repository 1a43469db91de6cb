"""HQ program operations: rule sets and dealer settlement."""

from __future__ import annotations

import marshmallow as ma

from app.core.schemas import Length, Range


class RuleSetSchema(ma.Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    status = ma.fields.String()
    effective_from = ma.fields.DateTime(allow_none=True)
    effective_to = ma.fields.DateTime(allow_none=True)
    based_on_id = ma.fields.Integer(allow_none=True)
    simulated_at = ma.fields.DateTime(allow_none=True)
    simulation = ma.fields.Dict(allow_none=True)
    published_by = ma.fields.String(allow_none=True)
    rules = ma.fields.List(ma.fields.Dict())


class NewRuleSetArgs(ma.Schema):
    name = ma.fields.String(required=True, validate=Length(min=1, max=128))


class RulesArgs(ma.Schema):
    rules = ma.fields.List(ma.fields.Dict(), required=True)


class SimulateArgs(ma.Schema):
    days = ma.fields.Integer(load_default=30, validate=Range(min=1, max=365))


class PublishArgs(ma.Schema):
    effective_from = ma.fields.AwareDateTime()


class SettlementLineSchema(ma.Schema):
    kind = ma.fields.String(metadata={"description": "benefit"})
    code = ma.fields.String(metadata={"description": "Benefit code"})
    funder = ma.fields.String(metadata={"description": "oem, dealer, partner"})
    quantity = ma.fields.Integer()
    amount_fen = ma.fields.Integer()


class SettlementSchema(ma.Schema):
    id = ma.fields.Integer()
    dealer_code = ma.fields.String()
    month = ma.fields.String()
    status = ma.fields.String()
    funded_points = ma.fields.Integer()
    redeemed_points = ma.fields.Integer()
    point_value_fen = ma.fields.Integer()
    net_fen = ma.fields.Integer()
    benefit_fen = ma.fields.Integer(metadata={"description": "OEM-funded benefits the dealer delivered (in net_fen)"})
    lines = ma.fields.List(ma.fields.Nested(SettlementLineSchema))


class PaymentArgs(ma.Schema):
    payment_ref = ma.fields.String(validate=Length(max=64))
