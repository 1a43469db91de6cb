"""Subscription grants the mini-app records."""

from __future__ import annotations

import marshmallow as ma

from app.core.schemas import BaseSchema, Length, OneOf, PageArgs


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


class CallbackListArgs(PageArgs):
    status = ma.fields.String(load_default="open", validate=OneOf(("open", "claimed", "closed")))


class CallbackCloseArgs(BaseSchema):
    note = ma.fields.String(
        required=True, validate=Length(min=1, max=500), metadata={"description": "What came of the call"}
    )


class CallbackTaskSchema(ma.Schema):
    id = ma.fields.Integer()
    member_no = ma.fields.String()
    reason = ma.fields.String(metadata={"description": "churn_risk: no interaction for 3 months"})
    period = ma.fields.String()
    status = ma.fields.String()
    created_at = ma.fields.DateTime()
    claimed_by = ma.fields.Integer(allow_none=True)
    claimed_at = ma.fields.DateTime(allow_none=True)
    closed_at = ma.fields.DateTime(allow_none=True)
    note = ma.fields.String(allow_none=True)


class CallbackPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(CallbackTaskSchema))
    page = ma.fields.Integer()
    per_page = ma.fields.Integer()
    total = ma.fields.Integer()
