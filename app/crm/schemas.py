"""The CRM's webhook envelope and the back-office shapes."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from app.core.http import BIGINT_MAX
from app.core.schemas import BaseSchema, Day, Length, Moment, OneOf, Range
from app.members.models import CONSENT_PURPOSES, GENDERS

EVENT_TYPES = ("profile.updated", "consent.changed", "member.merged", "dealer.changed", "staff.changed")
_member_no = fields.String(required=True, validate=Length(min=4, max=16))


class ProfileUpdatedSchema(BaseSchema):
    member_no = _member_no
    version = Moment(required=True, metadata={"description": "When the change was made in the CRM"})
    name = fields.String(allow_none=True, validate=Length(max=64))
    gender = fields.String(allow_none=True, validate=OneOf(GENDERS))
    birthday = Day(allow_none=True)
    city = fields.String(allow_none=True, validate=Length(max=64))
    address = fields.String(allow_none=True, validate=Length(max=255), metadata={"description": "Home address"})
    preferred_dealer = fields.String(
        allow_none=True,
        validate=Length(max=16),
        metadata={"description": "Dealer code (null clears it); a code naming no open dealer is noted, not applied"},
    )


class ConsentChangedSchema(BaseSchema):
    member_no = _member_no
    purpose = fields.String(required=True, validate=OneOf(CONSENT_PURPOSES))
    granted = fields.Boolean(required=True)
    decided_at = Moment(required=True)
    policy_version = fields.String(validate=Length(max=16))


class MemberMergedSchema(BaseSchema):
    survivor = _member_no
    merged = fields.List(fields.String(validate=Length(min=4, max=16)), required=True, validate=Length(min=1, max=20))


_version = Moment(
    required=True, metadata={"description": "When HQ made the change (an older one than applied is ignored)"}
)
_status = fields.String(validate=Length(max=16), metadata={"description": "open/active (default) or closed/left"})


class DealerChangedSchema(BaseSchema):
    """HQ's dealer master record: opening, moving (a new address/city/region), closing."""

    version = _version
    code = fields.String(required=True, validate=Length(min=1, max=16))
    name = fields.String(required=True, validate=Length(min=1, max=128))
    region = fields.String(required=True, validate=Length(min=1, max=32))
    city = fields.String(required=True, validate=Length(min=1, max=64))
    address = fields.String(allow_none=True, validate=Length(max=255))
    phone = fields.String(allow_none=True, validate=Length(max=32))
    latitude = fields.Float(allow_none=True, validate=Range(min=-90, max=90))
    longitude = fields.Float(allow_none=True, validate=Range(min=-180, max=180))
    opened_on = Day(allow_none=True)
    closed_on = Day(allow_none=True)
    status = _status
    target = fields.Integer(allow_none=True, validate=Range(min=0, max=1_000_000))


class StaffChangedSchema(BaseSchema):
    """HQ's staff master record: an advisor joins, moves to another dealer, changes role or leaves."""

    version = _version
    staff_code = fields.String(required=True, validate=Length(min=1, max=32))
    dealer_code = fields.String(required=True, validate=Length(min=1, max=16))
    name = fields.String(required=True, validate=Length(min=1, max=128))
    role = fields.String(required=True, validate=Length(min=1, max=32))
    joined_on = Day(allow_none=True)
    left_on = Day(allow_none=True)
    status = _status
    target = fields.Integer(allow_none=True, validate=Range(min=0, max=100_000))


DATA_SCHEMAS = {
    "profile.updated": ProfileUpdatedSchema,
    "consent.changed": ConsentChangedSchema,
    "member.merged": MemberMergedSchema,
    "dealer.changed": DealerChangedSchema,
    "staff.changed": StaffChangedSchema,
}


class CrmEventSchema(BaseSchema):
    event_id = fields.String(required=True, validate=Length(min=1, max=64))
    type = fields.String(required=True, validate=OneOf(EVENT_TYPES))
    occurred_at = Moment(required=True)
    data = fields.Dict(required=True)

    @ma.validates_schema
    def _data_of_its_type(self, document: dict, **_kwargs: object) -> None:
        schema = DATA_SCHEMAS.get(document.get("type", ""))
        if schema is None:
            return
        errors = schema().validate(document.get("data") or {})
        if errors:
            raise ma.ValidationError({"data": errors})


class CrmAcceptedSchema(BaseSchema):
    status = fields.String(metadata={"description": "accepted or duplicate"})
    event_id = fields.String()


class SyncStateSchema(BaseSchema):
    last_delivered_at = fields.String(allow_none=True)
    pending = fields.Integer()
    dead = fields.Integer()


class MergeRequestSchema(BaseSchema):
    request_id = fields.String(required=True, validate=Length(min=8, max=64))
    survivor_id = fields.Integer(required=True, strict=True, validate=Range(min=1, max=BIGINT_MAX))
    merged_ids = fields.List(
        fields.Integer(strict=True, validate=Range(min=1, max=BIGINT_MAX)),
        required=True,
        validate=Length(min=1, max=20),
    )
    reason = fields.String(required=True, validate=Length(min=2, max=255))


class MergeDecisionSchema(BaseSchema):
    reason = fields.String(validate=Length(min=2, max=255))


class MergeSchema(BaseSchema):
    id = fields.Integer()
    survivor_id = fields.Integer()
    merged_ids = fields.List(fields.Integer())
    source = fields.String()
    status = fields.String()
    reason = fields.String(allow_none=True)
    requested_by = fields.String()
    decided_by = fields.String(allow_none=True)
    summary = fields.Dict(allow_none=True)
