"""Subscription grants, notification preferences, and the back office's notification views."""

from __future__ import annotations

import marshmallow as ma

from app.care.models import CALLBACK_OUTCOMES
from app.core.i18n import _l
from app.core.schemas import BaseSchema, Day, Length, OneOf, PageArgs


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
    outcome = ma.fields.String(
        load_default=None,
        validate=OneOf(CALLBACK_OUTCOMES),
        metadata={"description": "resolved, follow_up (reached, more to do), unreachable or declined"},
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
    outcome = ma.fields.String(allow_none=True)


class CallbackPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(CallbackTaskSchema))
    page = ma.fields.Integer()
    per_page = ma.fields.Integer()
    total = ma.fields.Integer()


def _choice() -> ma.fields.Boolean:
    """true or false, nothing that merely looks like one ("yes", 1)."""
    return ma.fields.Boolean(truthy={True}, falsy={False})


class PreferenceChoices(BaseSchema):
    service = _choice()
    marketing = _choice()


class PreferencesArgs(BaseSchema):
    opted_out = ma.fields.Nested(
        PreferenceChoices,
        required=True,
        metadata={"description": "Categories to change: true stops that category's messages, false resumes them"},
    )

    @ma.validates("opted_out")
    def _not_empty(self, value: dict, **_: object) -> None:
        if not value:
            raise ma.ValidationError(str(_l("Choose at least one category.")))


class PreferencesSchema(ma.Schema):
    opted_out = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Boolean())
    consented = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Boolean(),
        metadata={"description": "Whether the member's consent allows the category (changed under privacy settings)"},
    )


class ResendArgs(BaseSchema):
    reason = ma.fields.String(required=True, validate=Length(min=3, max=255), metadata={"description": "Audited"})


class NotificationSchema(ma.Schema):
    id = ma.fields.Integer()
    kind = ma.fields.String()
    channel = ma.fields.String()
    status = ma.fields.String()
    period = ma.fields.String(allow_none=True)
    error = ma.fields.String(allow_none=True)
    delivery_status = ma.fields.String(allow_none=True)
    attempts = ma.fields.Integer()
    created_at = ma.fields.DateTime()
    due_at = ma.fields.DateTime()
    sent_at = ma.fields.DateTime(allow_none=True)
    finished_at = ma.fields.DateTime(allow_none=True)


class NotificationHistoryArgs(PageArgs):
    reason = ma.fields.String(validate=Length(max=255), metadata={"description": "Why you look (audited)"})


class NotificationPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(NotificationSchema))
    page = ma.fields.Integer()
    per_page = ma.fields.Integer()
    total = ma.fields.Integer()


class RatesArgs(BaseSchema):
    since = Day(required=True, metadata={"description": "First day (Asia/Shanghai), planned on or after"})
    until = Day(metadata={"description": "Last day included (default: today)"})


class RateSchema(ma.Schema):
    kind = ma.fields.String()
    channel = ma.fields.String()
    total = ma.fields.Integer()
    reached = ma.fields.Integer()
    delivered = ma.fields.Integer()
    failed = ma.fields.Integer()
    skipped = ma.fields.Integer()
    open = ma.fields.Integer()
    delivery_rate = ma.fields.Float(allow_none=True)


class SmsReportSchema(ma.Schema):
    """One Aliyun SMS status report (SmsReport, HTTP batch push). Fields Aliyun may add later are
    ignored, not refused: a refused push is retried three times and then lost."""

    class Meta:
        unknown = ma.EXCLUDE

    phone_number = ma.fields.String(required=True, validate=Length(max=32), metadata={"example": "1381111****"})
    send_time = ma.fields.String(
        load_default=None, validate=Length(max=32), metadata={"example": "2017-01-01 00:00:00"}
    )
    report_time = ma.fields.String(load_default=None, validate=Length(max=32))
    success = ma.fields.Boolean(
        required=True,
        truthy={True},
        falsy={False},
        metadata={"description": "Whether the phone received the message (a JSON boolean)"},
    )
    err_code = ma.fields.String(
        required=True, validate=Length(max=64), metadata={"example": "DELIVERED", "description": "Carrier status code"}
    )
    err_msg = ma.fields.String(load_default="", validate=Length(max=255))
    sms_size = ma.fields.String(load_default=None, validate=Length(max=8))
    biz_id = ma.fields.String(
        required=True,
        validate=Length(min=1, max=64),
        metadata={"description": "The BizId SendSms answered with (kept on the notification)"},
    )
    out_id = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=Length(max=64),
        metadata={"description": "The OutId given to SendSms: the notification's id"},
    )


class SmsReportAnswerSchema(ma.Schema):
    """What Aliyun expects back (it only checks that ``code`` is a number and the HTTP status 200)."""

    code = ma.fields.Integer(required=True, metadata={"example": 0})
    msg = ma.fields.String(required=True, metadata={"example": "接收成功"})
