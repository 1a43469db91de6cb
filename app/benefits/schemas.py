"""Request and response shapes of the benefit APIs (mini-app, staff mode, back office, HQ)."""

from __future__ import annotations

import re

import marshmallow as ma

from app.benefits.catalog import BenefitSchema
from app.core.schemas import BaseSchema, Day, Length, Moment, Range, Regexp, identifier

ROW_ID = {"validate": Range(min=1, max=2**63 - 1)}
SHARE_KEY = [Length(min=8, max=32), Regexp(re.compile(r"[A-Za-z0-9_-]+"))]


class BookingArgs(BaseSchema):
    benefit = ma.fields.String(required=True, validate=identifier(32), metadata={"description": "Benefit code"})
    slot = ma.fields.Integer(
        load_default=None, allow_none=True, **ROW_ID, metadata={"description": "Slot id (benefits that need one)"}
    )
    vehicle = ma.fields.Integer(
        load_default=None, allow_none=True, **ROW_ID, metadata={"description": "Vehicle id (car-bound benefits)"}
    )
    dealer = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=identifier(16),
        metadata={"description": "Dealer code (benefits without a slot; default: my preferred dealer while open)"},
    )
    request_id = ma.fields.String(
        required=True,
        validate=Length(min=8, max=64),
        metadata={"description": "A fresh id per tap on 'book'; resending it returns the same booking"},
    )
    share = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=SHARE_KEY,
        metadata={"description": "Key of a benefit a friend shared and I claimed: pays for the booking"},
    )


class RescheduleArgs(BaseSchema):
    slot = ma.fields.Integer(required=True, **ROW_ID)
    request_id = ma.fields.String(required=True, validate=Length(min=8, max=64))


class SlotQueryArgs(BaseSchema):
    day = Day(required=True)
    service_type = ma.fields.String(load_default=None, validate=identifier(32))


class SlotSchema(ma.Schema):
    id = ma.fields.Integer()
    service_type = ma.fields.String()
    day = ma.fields.Date()
    starts_at = ma.fields.DateTime()
    ends_at = ma.fields.DateTime()
    capacity = ma.fields.Integer()
    booked = ma.fields.Integer()
    available = ma.fields.Integer()


class NewSlotArgs(BaseSchema):
    dealer_code = ma.fields.String(
        load_default=None,
        validate=identifier(16),
        metadata={"description": "HQ only; a dealer manager publishes for their dealer"},
    )
    service_type = ma.fields.String(required=True, validate=identifier(32))
    starts_at = Moment(required=True)
    ends_at = Moment(required=True)
    capacity = ma.fields.Integer(required=True, validate=Range(min=0, max=1000))


class SlotCsvArgs(BaseSchema):
    dealer_code = ma.fields.String(load_default=None, validate=identifier(16))
    csv = ma.fields.String(
        required=True,
        validate=Length(min=1, max=500_000),
        metadata={"description": "CSV: header date,start,end,service_type,capacity; times in Asia/Shanghai"},
    )


class CsvResultSchema(ma.Schema):
    created = ma.fields.Integer()
    updated = ma.fields.Integer()


class EntitlementSchema(ma.Schema):
    year_start = ma.fields.Date()
    year_end = ma.fields.Date()
    quota = ma.fields.Integer(allow_none=True)
    used = ma.fields.Integer()
    remaining = ma.fields.Integer(allow_none=True, metadata={"description": "null: unlimited"})


class OfferSchema(ma.Schema):
    code = ma.fields.String()
    name = ma.fields.String()
    description = ma.fields.String()
    needs_slot = ma.fields.Boolean()
    service_type = ma.fields.String(allow_none=True)
    binding = ma.fields.String()
    transferable = ma.fields.Boolean()
    points_price = ma.fields.Integer(allow_none=True)
    usable = ma.fields.Boolean()
    pays_with = ma.fields.String(allow_none=True, metadata={"description": "quota, free, points"})
    reason = ma.fields.String(allow_none=True)
    reason_message = ma.fields.String(allow_none=True)
    entitlement = ma.fields.Nested(EntitlementSchema, allow_none=True)


class BookingSchema(ma.Schema):
    id = ma.fields.Integer()
    request_id = ma.fields.String()
    benefit = ma.fields.String()
    benefit_name = ma.fields.String()
    status = ma.fields.String()
    paid_with = ma.fields.String()
    points_spent = ma.fields.Integer()
    slot = ma.fields.Nested(SlotSchema, allow_none=True)
    dealer_code = ma.fields.String(allow_none=True)
    vehicle = ma.fields.Integer(allow_none=True)
    created_at = ma.fields.DateTime()
    cancelled_at = ma.fields.DateTime(allow_none=True)
    delivered_at = ma.fields.DateTime(allow_none=True)
    rescheduled_from = ma.fields.Integer(allow_none=True)
    rating = ma.fields.Integer(allow_none=True)
    rated_at = ma.fields.DateTime(allow_none=True)
    partner = ma.fields.Nested(
        "PartnerOrderSchema", allow_none=True, metadata={"description": "A benefit a partner delivers: its code"}
    )


class PartnerOrderSchema(ma.Schema):
    status = ma.fields.String(metadata={"description": "pending, issued, failed, used, voiding, voided"})
    service_code = ma.fields.String(
        allow_none=True, metadata={"description": "What the member shows or reads out to the partner (once issued)"}
    )
    expires_at = ma.fields.DateTime(allow_none=True)


class PartnerUsageSchema(BaseSchema):
    """The partner's usage callback (signed like the DMS and CRM webhooks)."""

    event_id = ma.fields.String(required=True, validate=Length(min=1, max=64))
    out_order_no = ma.fields.String(required=True, validate=Length(min=1, max=32))
    service_code = ma.fields.String(required=True, validate=Length(min=1, max=64))
    used_at = Moment(required=True)
    used_where = ma.fields.String(load_default=None, allow_none=True, validate=Length(max=128))


class PartnerAcceptedSchema(BaseSchema):
    status = ma.fields.String(metadata={"description": "accepted or duplicate"})
    event_id = ma.fields.String()


class RatingArgs(BaseSchema):
    rating = ma.fields.Integer(required=True, validate=Range(min=1, max=5), metadata={"description": "1 (bad) … 5"})
    comment = ma.fields.String(load_default=None, allow_none=True, validate=Length(max=255))


class ShareArgs(BaseSchema):
    benefit = ma.fields.String(required=True, validate=identifier(32), metadata={"description": "Benefit code"})
    request_id = ma.fields.String(
        required=True,
        validate=Length(min=8, max=64),
        metadata={"description": "A fresh id per tap on 'share'; resending it returns the same share"},
    )
    dealer = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=identifier(16),
        metadata={"description": "Dealer for the friend (default: my car's dealer, else my enrolling dealer)"},
    )
    model = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=Length(min=1, max=64),
        metadata={"description": "Model of interest"},
    )


class ClaimArgs(BaseSchema):
    model = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=Length(min=1, max=64),
        metadata={"description": "Model of interest"},
    )


class ShareSchema(ma.Schema):
    key = ma.fields.String()
    benefit = ma.fields.String()
    benefit_name = ma.fields.String()
    status = ma.fields.String(metadata={"description": "open, claimed, returned"})
    dealer_code = ma.fields.String()
    dealer_name = ma.fields.String()
    expires_at = ma.fields.DateTime()
    claimed_at = ma.fields.DateTime(allow_none=True)
    mine = ma.fields.Boolean(metadata={"description": "I gave it (false: shared with me)"})
    booking = ma.fields.Integer(allow_none=True, metadata={"description": "The booking made with it"})
    scene = ma.fields.String(metadata={"description": "Scene for the mini-app code (wxacode.getUnlimited)"})
    path = ma.fields.String(metadata={"description": "Mini-app page of the share link"})
    wxacode_url = ma.fields.String(
        allow_none=True, metadata={"description": "The share's mini-app code image (PNG; the giver only)"}
    )


class CatalogArgs(BaseSchema):
    name = ma.fields.String(required=True, validate=Length(min=1, max=128))


class CatalogBenefitsArgs(BaseSchema):
    benefits = ma.fields.List(ma.fields.Dict(), required=True, validate=Length(min=1, max=200))


class PublishCatalogArgs(BaseSchema):
    effective_from = Moment(load_default=None)


class CatalogSchema(ma.Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    status = ma.fields.String()
    based_on_id = ma.fields.Integer(allow_none=True)
    effective_from = ma.fields.DateTime(allow_none=True)
    effective_to = ma.fields.DateTime(allow_none=True)
    published_by = ma.fields.String(allow_none=True)
    benefits = ma.fields.List(ma.fields.Nested(BenefitSchema))
