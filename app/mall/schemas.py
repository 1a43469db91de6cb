"""Request and response shapes of the mall APIs (mini-app, staff mode, back office)."""

from __future__ import annotations

import marshmallow as ma

from app.core.schemas import BaseSchema, Length, Moment, Month, OneOf, Range, identifier
from app.mall.engagement import CONTENT_ACTIVITIES
from app.mall.models import ITEM_KINDS
from app.tiers.models import TIERS

ROW_ID = {"validate": Range(min=1, max=2**63 - 1)}
POINTS = {"validate": Range(min=1, max=10_000_000)}
UNITS = {"validate": Range(min=1, max=1_000_000)}


class MallLocalizedText(BaseSchema):
    zh_CN = ma.fields.String(required=True, validate=Length(min=1, max=200))
    en = ma.fields.String(load_default=None, allow_none=True, validate=Length(max=200))


class MallLocalizedLongText(BaseSchema):
    zh_CN = ma.fields.String(load_default="", validate=Length(max=2000))
    en = ma.fields.String(load_default=None, allow_none=True, validate=Length(max=2000))


# --- mini-app ------------------------------------------------------------------------------------


class MallCatalogArgs(BaseSchema):
    affordable = ma.fields.Boolean(
        load_default=False, metadata={"description": "Only items I can redeem now with my points"}
    )


class LimitsSchema(ma.Schema):
    per_order = ma.fields.Integer(allow_none=True)
    this_month = ma.fields.Integer(allow_none=True)
    lifetime = ma.fields.Integer(allow_none=True)


class FlashSchema(ma.Schema):
    points_price = ma.fields.Integer()
    quantity = ma.fields.Integer()
    left = ma.fields.Integer()
    ends_at = ma.fields.DateTime()


class MallOfferSchema(ma.Schema):
    code = ma.fields.String()
    kind = ma.fields.String()
    name = ma.fields.String()
    description = ma.fields.String()
    image_url = ma.fields.String(allow_none=True)
    points_price = ma.fields.Integer(metadata={"description": "Per unit, now (a flash offer's when on)"})
    usual_points_price = ma.fields.Integer()
    cash_fen = ma.fields.Integer(
        metadata={"description": "Cash on top of the points per unit, in fen (0: points only)"}
    )
    flash = ma.fields.Nested(FlashSchema, allow_none=True)
    in_stock = ma.fields.Boolean()
    redeemable = ma.fields.Boolean()
    reason = ma.fields.String(allow_none=True)
    limits_left = ma.fields.Nested(LimitsSchema)
    affordable_units = ma.fields.Integer()


class RedemptionArgs(BaseSchema):
    #: the redemption's hot path: a well-formed body is loaded by ``schemas.quick_load``
    QUICK_LOAD = True

    item = ma.fields.String(required=True, validate=identifier(32), metadata={"description": "Item code"})
    quantity = ma.fields.Integer(load_default=1, validate=Range(min=1, max=100))
    address = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=Length(max=300),
        metadata={"description": "Delivery address (physical goods; stored encrypted)"},
    )
    request_id = ma.fields.String(
        required=True,
        validate=Length(min=8, max=64),
        metadata={"description": "A fresh id per tap on 'redeem'; resending it returns the same order"},
    )


class VoucherSchema(ma.Schema):
    id = ma.fields.Integer()
    order = ma.fields.Integer()
    item = ma.fields.String()
    item_name = ma.fields.String()
    status = ma.fields.String()
    code = ma.fields.String(allow_none=True, metadata={"description": "Shown only while usable"})
    qr_url = ma.fields.String(allow_none=True, metadata={"description": "The code as a QR PNG (while usable)"})
    issued_at = ma.fields.DateTime()
    expires_at = ma.fields.DateTime()
    used_at = ma.fields.DateTime(allow_none=True)


class PaymentSchema(ma.Schema):
    status = ma.fields.String(
        metadata={"description": "awaiting, paid, closed, refunding (until WeChat confirms), refunded or refund_failed"}
    )
    amount_fen = ma.fields.Integer()
    expires_at = ma.fields.DateTime(metadata={"description": "Unpaid by then, the order is closed and given back"})
    pay_params = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        allow_none=True,
        metadata={"description": "What wx.requestPayment takes (while the order can be paid)"},
    )


class OrderSchema(ma.Schema):
    id = ma.fields.Integer()
    request_id = ma.fields.String()
    item = ma.fields.String()
    item_name = ma.fields.String()
    kind = ma.fields.String()
    quantity = ma.fields.Integer()
    unit_points = ma.fields.Integer()
    points_spent = ma.fields.Integer()
    cash_fen = ma.fields.Integer()
    status = ma.fields.String(
        metadata={"description": "awaiting_payment, created, fulfilled, completed, cancelled or expired"}
    )
    payment = ma.fields.Nested(PaymentSchema, allow_none=True)
    flash_offer = ma.fields.Integer(allow_none=True)
    tracking_number = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    fulfilled_at = ma.fields.DateTime(allow_none=True)
    completed_at = ma.fields.DateTime(allow_none=True)
    cancelled_at = ma.fields.DateTime(allow_none=True)
    vouchers = ma.fields.List(ma.fields.Nested(VoucherSchema))


class RecommendationSchema(ma.Schema):
    item = ma.fields.Nested(MallOfferSchema)
    reason = ma.fields.String()
    message = ma.fields.String()


class SignInSchema(ma.Schema):
    day = ma.fields.Date()
    signed_in_today = ma.fields.Boolean()
    new = ma.fields.Boolean()
    points = ma.fields.Integer(metadata={"description": "Points this sign-in earned (0 once the cap is reached)"})
    streak = ma.fields.Integer(metadata={"description": "Consecutive days signed in, today included"})


class ActivityArgs(BaseSchema):
    activity = ma.fields.String(required=True, validate=OneOf(CONTENT_ACTIVITIES))
    ref = ma.fields.String(
        required=True, validate=identifier(40), metadata={"description": "The survey's, article's or content's id"}
    )


class ActivitySchema(ma.Schema):
    activity = ma.fields.String()
    ref = ma.fields.String()
    points = ma.fields.Integer(metadata={"description": "Points earned now (0: already counted)"})
    new = ma.fields.Boolean(metadata={"description": "False: this activity was already counted (today)"})


class VoucherScanArgs(BaseSchema):
    code = ma.fields.String(required=True, validate=Length(min=4, max=128))


# --- back office ---------------------------------------------------------------------------------


class ItemFields(BaseSchema):
    kind = ma.fields.String(required=True, validate=OneOf(ITEM_KINDS))
    name = ma.fields.Nested(MallLocalizedText, required=True)
    description = ma.fields.Nested(MallLocalizedLongText, load_default=lambda: {"zh_CN": ""})
    image_url = ma.fields.Url(load_default=None, allow_none=True, validate=Length(max=500), require_tld=False)
    points_price = ma.fields.Integer(required=True, **POINTS)
    cash_fen = ma.fields.Integer(load_default=0, validate=Range(min=0, max=10_000_000))
    cost_fen = ma.fields.Integer(load_default=0, validate=Range(min=0, max=100_000_000))
    stock = ma.fields.Integer(required=True, validate=Range(min=0, max=10_000_000))
    low_stock_threshold = ma.fields.Integer(load_default=10, validate=Range(min=0, max=1_000_000))
    per_order_limit = ma.fields.Integer(load_default=None, allow_none=True, **UNITS)
    per_month_limit = ma.fields.Integer(load_default=None, allow_none=True, **UNITS)
    lifetime_limit = ma.fields.Integer(load_default=None, allow_none=True, **UNITS)
    eligible_tiers = ma.fields.List(ma.fields.String(validate=OneOf(TIERS)), load_default=list)
    active_from = Moment(load_default=None, allow_none=True)
    active_to = Moment(load_default=None, allow_none=True)
    voucher_valid_days = ma.fields.Integer(load_default=90, validate=Range(min=1, max=3650))
    active = ma.fields.Boolean(load_default=True)


class NewItemArgs(ItemFields):
    code = ma.fields.String(required=True, validate=identifier(32))


class ItemChangeArgs(BaseSchema):
    name = ma.fields.Nested(MallLocalizedText)
    description = ma.fields.Nested(MallLocalizedLongText)
    image_url = ma.fields.Url(allow_none=True, validate=Length(max=500), require_tld=False)
    points_price = ma.fields.Integer(**POINTS)
    cost_fen = ma.fields.Integer(validate=Range(min=0, max=100_000_000))
    low_stock_threshold = ma.fields.Integer(validate=Range(min=0, max=1_000_000))
    per_order_limit = ma.fields.Integer(allow_none=True, **UNITS)
    per_month_limit = ma.fields.Integer(allow_none=True, **UNITS)
    lifetime_limit = ma.fields.Integer(allow_none=True, **UNITS)
    eligible_tiers = ma.fields.List(ma.fields.String(validate=OneOf(TIERS)))
    active_from = Moment(allow_none=True)
    active_to = Moment(allow_none=True)
    active = ma.fields.Boolean()


class StockArgs(BaseSchema):
    units = ma.fields.Integer(
        required=True,
        validate=Range(min=-10_000_000, max=10_000_000),
        metadata={"description": "Units to add (negative: written off)"},
    )


class ItemSchema(ma.Schema):
    id = ma.fields.Integer()
    code = ma.fields.String()
    kind = ma.fields.String()
    name = ma.fields.Dict()
    description = ma.fields.Dict()
    image_url = ma.fields.String(allow_none=True)
    points_price = ma.fields.Integer()
    cash_fen = ma.fields.Integer()
    cost_fen = ma.fields.Integer()
    stock = ma.fields.Integer()
    low_stock_threshold = ma.fields.Integer()
    per_order_limit = ma.fields.Integer(allow_none=True)
    per_month_limit = ma.fields.Integer(allow_none=True)
    lifetime_limit = ma.fields.Integer(allow_none=True)
    eligible_tiers = ma.fields.List(ma.fields.String())
    active_from = ma.fields.DateTime(allow_none=True)
    active_to = ma.fields.DateTime(allow_none=True)
    voucher_valid_days = ma.fields.Integer()
    active = ma.fields.Boolean()


class FlashOfferArgs(BaseSchema):
    points_price = ma.fields.Integer(required=True, **POINTS)
    quantity = ma.fields.Integer(required=True, **UNITS)
    starts_at = Moment(required=True)
    ends_at = Moment(required=True)


class FlashOfferSchema(ma.Schema):
    id = ma.fields.Integer()
    item = ma.fields.String()
    points_price = ma.fields.Integer()
    quantity = ma.fields.Integer()
    sold = ma.fields.Integer()
    starts_at = ma.fields.DateTime()
    ends_at = ma.fields.DateTime()


class ShipArgs(BaseSchema):
    tracking_number = ma.fields.String(required=True, validate=identifier(64))


class CancelArgs(BaseSchema):
    reason = ma.fields.String(required=True, validate=Length(min=3, max=255))


class FulfilmentSchema(OrderSchema):
    member = ma.fields.Integer()
    address = ma.fields.String(allow_none=True, metadata={"description": "Read audited"})


class CodeBatchArgs(BaseSchema):
    csv = ma.fields.String(
        required=True,
        validate=Length(min=1, max=2_000_000),
        metadata={"description": "CSV: header code[,expires_on]; expires_on YYYY-MM-DD (Asia/Shanghai)"},
    )


class RowErrorSchema(ma.Schema):
    line = ma.fields.Integer()
    error = ma.fields.String()


class CodeBatchSchema(ma.Schema):
    id = ma.fields.Integer()
    item = ma.fields.String()
    status = ma.fields.String()
    total_rows = ma.fields.Integer()
    processed = ma.fields.Integer()
    accepted = ma.fields.Integer()
    progress_percent = ma.fields.Integer()
    errors = ma.fields.List(ma.fields.Nested(RowErrorSchema))


class ReportArgs(BaseSchema):
    month = Month(required=True, metadata={"description": "YYYY-MM"})


class ReportLineSchema(ma.Schema):
    item = ma.fields.String()
    name = ma.fields.String()
    kind = ma.fields.String()
    orders = ma.fields.Integer()
    units = ma.fields.Integer()
    points = ma.fields.Integer()
    points_value_fen = ma.fields.Integer(metadata={"description": "The points at 5 points = ¥1"})
    cost_fen = ma.fields.Integer()


class StockAlertSchema(ma.Schema):
    item = ma.fields.String()
    name = ma.fields.String()
    stock = ma.fields.Integer()
    low_stock_threshold = ma.fields.Integer()
    redeemed_last_7_days = ma.fields.Integer()
