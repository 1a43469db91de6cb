"""Subscription grants the mini-app records."""

from __future__ import annotations

import marshmallow as ma

from app.core.schemas import BaseSchema, Length, OneOf


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
