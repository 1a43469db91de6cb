"""The DMS event contract (SPEC §11): an envelope plus one payload schema per event type.

Validation happens at intake, before anything is stored: a bad payload gets 422 with field errors
and leaves no trace. Amounts are integer fen; business dates are dates on the dealer's calendar.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import marshmallow as ma

from app.config import current_settings
from app.core.clock import utcnow
from app.core.i18n import _l
from app.core.schemas import BaseSchema, Day, Length, Moment, Money, OneOf, Range, identifier, quick_load
from app.members.identifiers import VIN_MESSAGES, cn_mobile, normalize_vin, vin_problem
from app.members.models import CONSENT_PURPOSES, CUSTOMER_TYPES, GENDERS
from app.members.registration import known_policy_versions


class VinField(ma.fields.String):
    """A 17-character VIN with a correct check digit, normalized to upper case."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        vin = normalize_vin(super()._deserialize(value, attr, data, **kwargs))
        problem = vin_problem(vin)
        if problem:
            raise ma.ValidationError(str(VIN_MESSAGES[problem]))
        return vin


class MobileField(ma.fields.String):
    """A mainland China mobile number, normalized to 11 digits."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        normalized = cn_mobile(super()._deserialize(value, attr, data, **kwargs))
        if normalized is None:
            raise ma.ValidationError(str(_l("Not a valid mainland China mobile number.")))
        return normalized


class ConsentSchema(BaseSchema):
    """The consent the buyer gave at the dealer (PIPL): without it we store nothing about them."""

    policy_version = ma.fields.String(required=True, validate=Length(min=1, max=16))
    accepted_at = Moment(required=True)
    purposes = ma.fields.List(
        ma.fields.String(validate=OneOf([p for p in CONSENT_PURPOSES if p != "privacy_policy"])),
        load_default=list,
    )

    @ma.validates("accepted_at")
    def _not_in_the_future(self, value: dt.datetime, **_kwargs: Any) -> None:
        """A stated time later than our clock (beyond the signature window) is refused: consent
        cannot be given in the future (nor made to look newer than a later withdrawal)."""
        if value > utcnow() + dt.timedelta(seconds=current_settings().SIGNATURE_WINDOW_SECONDS):
            raise ma.ValidationError(str(_l("Consent cannot have been accepted in the future.")))


class BuyerSchema(BaseSchema):
    name = ma.fields.String(required=True, validate=Length(min=1, max=64))
    phone = MobileField(required=True)
    gender = ma.fields.String(validate=OneOf(GENDERS))
    birthday = Day()
    city = ma.fields.String(validate=Length(max=64))
    customer_type = ma.fields.String(load_default="private", validate=OneOf(CUSTOMER_TYPES))
    consent = ma.fields.Nested(ConsentSchema, required=True)


class VehicleDeliveredSchema(BaseSchema):
    order_no = ma.fields.String(required=True, validate=identifier(64))
    vin = VinField(required=True)
    model_code = ma.fields.String(required=True, validate=Length(min=1, max=32))
    model_name = ma.fields.String(required=True, validate=Length(min=1, max=64))
    model_year = ma.fields.Integer(strict=True, validate=Range(min=1990, max=2100))
    price_fen = Money(required=True, validate=Range(min=1))
    delivered_on = Day(required=True)
    plate = ma.fields.String(validate=Length(max=16))
    advisor_code = ma.fields.String(validate=Length(max=32))
    purchase_type = ma.fields.String(load_default="new", validate=OneOf(("new", "add_on", "replacement", "family")))
    #: A family member's purchase credits the main member's points (SPEC §1).
    credit_member_no = ma.fields.String(validate=Length(min=11, max=11))
    buyer = ma.fields.Nested(BuyerSchema, required=True)


class OrderCancelledSchema(BaseSchema):
    order_no = ma.fields.String(required=True, validate=identifier(64))
    vin = VinField(required=True)
    cancelled_on = Day(required=True)
    reason = ma.fields.String(validate=Length(max=255))


class ServiceCompletedSchema(BaseSchema):
    repair_order_no = ma.fields.String(required=True, validate=identifier(64))
    vin = VinField(required=True)
    completed_on = Day(required=True)
    mileage_km = ma.fields.Integer(strict=True, required=True, validate=Range(min=0, max=2_000_000))
    parts_fen = Money(required=True)
    labour_fen = Money(required=True)
    service_type = ma.fields.String(
        load_default="maintenance", validate=OneOf(("maintenance", "repair", "accident", "warranty", "other"))
    )
    advisor_code = ma.fields.String(validate=Length(max=32))


class ServiceRefundedSchema(BaseSchema):
    repair_order_no = ma.fields.String(required=True, validate=identifier(64))
    refund_no = ma.fields.String(required=True, validate=identifier(64))
    vin = VinField(required=True)
    refunded_on = Day(required=True)
    parts_fen = Money(required=True, metadata={"description": "Refunded parts amount in fen"})
    labour_fen = Money(required=True, metadata={"description": "Refunded labour amount in fen"})


class InsuranceRenewedSchema(BaseSchema):
    policy_no = ma.fields.String(required=True, validate=identifier(64))
    vin = VinField(required=True)
    premium_fen = Money(required=True, validate=Range(min=1))
    starts_on = Day(required=True)
    ends_on = Day(required=True)
    renewed_on = Day(required=True)
    insurer = ma.fields.String(
        load_default=None, validate=Length(max=64), metadata={"description": "The insurer's name (optional)"}
    )

    @ma.validates_schema
    def _period(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if data["ends_on"] <= data["starts_on"]:
            raise ma.ValidationError(str(_l("The policy must end after it starts.")), "ends_on")


class TestDriveCompletedSchema(BaseSchema):
    test_drive_id = ma.fields.String(required=True, validate=identifier(64))
    phone = MobileField(required=True)
    model_code = ma.fields.String(required=True, validate=Length(min=1, max=32))
    driven_on = Day(required=True)
    advisor_code = ma.fields.String(validate=Length(max=32))


class OrderPlacedSchema(BaseSchema):
    """A signed order (the referral funnel's "order" milestone, matched by the buyer's phone)."""

    order_no = ma.fields.String(required=True, validate=identifier(64))
    phone = MobileField(required=True)
    model_code = ma.fields.String(required=True, validate=Length(min=1, max=32))
    price_fen = Money(required=True, validate=Range(min=1))
    ordered_on = Day(required=True)
    advisor_code = ma.fields.String(validate=Length(max=32))


#: One instance per type: marshmallow schemas are reusable, and building one per request is costly.
PAYLOAD_SCHEMAS: dict[str, BaseSchema] = {
    "vehicle.delivered": VehicleDeliveredSchema(),
    "order.cancelled": OrderCancelledSchema(),
    "service.completed": ServiceCompletedSchema(),
    "service.refunded": ServiceRefundedSchema(),
    "insurance.renewed": InsuranceRenewedSchema(),
    "test_drive.completed": TestDriveCompletedSchema(),
    "order.placed": OrderPlacedSchema(),
}


class _DmsEnvelopeSchema(BaseSchema):
    """The envelope's own fields (``DmsEventSchema`` adds the payload's check by type)."""

    event_id = ma.fields.String(required=True, validate=identifier(64))
    type = ma.fields.String(required=True, validate=OneOf(sorted(PAYLOAD_SCHEMAS)))
    occurred_at = Moment(required=True)
    dealer_code = ma.fields.String(required=True, validate=Length(min=1, max=16))
    payload = ma.fields.Dict(required=True)


_ENVELOPE = _DmsEnvelopeSchema()


class DmsEventSchema(_DmsEnvelopeSchema):
    """``{event_id, type, occurred_at, dealer_code, payload}``; the payload is checked per type.

    ``intake=True`` (the webhook) also checks what may change after an event is stored: the buyer's
    privacy-policy version must be one the program knows (``privacy.policy_versions`` or the
    current one). A stored event is not re-judged on it when processed or replayed.

    At intake a well-formed event is vouched for by ``quick_load`` (the same fields, validators
    and hooks without marshmallow's machinery around them); anything it cannot vouch for is
    loaded in full, so every refusal carries marshmallow's field messages.
    """

    def __init__(self, *args: Any, intake: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.intake = intake

    def load(self, data: Any, *, many: bool | None = None, partial: Any = None, unknown: Any = None) -> Any:
        if self.intake and many is None and partial is None and unknown is None:
            quick = self._quick_load(data)
            if quick is not None:
                return quick
        return super().load(data, many=many, partial=partial, unknown=unknown)

    def _quick_load(self, data: Any) -> dict[str, Any] | None:
        envelope = quick_load(_ENVELOPE, data)
        if envelope is None:
            return None
        payload = quick_load(PAYLOAD_SCHEMAS[envelope["type"]], envelope["payload"])
        if payload is None:
            return None
        consent = payload.get("buyer", {}).get("consent")
        if consent is not None and consent["policy_version"] not in known_policy_versions():
            return None
        envelope["payload"] = payload
        return envelope

    @ma.post_load
    def _load_payload(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        try:
            data["payload"] = PAYLOAD_SCHEMAS[data["type"]].load(data["payload"])
        except ma.ValidationError as err:
            raise ma.ValidationError({"payload": err.messages}) from err
        consent = data["payload"].get("buyer", {}).get("consent")
        if self.intake and consent is not None and consent["policy_version"] not in known_policy_versions():
            message = str(_l("Unknown privacy policy version."))
            raise ma.ValidationError({"payload": {"buyer": {"consent": {"policy_version": [message]}}}})
        return data


class DmsAcceptedSchema(ma.Schema):
    status = ma.fields.String(metadata={"description": "accepted, or duplicate for a repeated event_id"})
    event_id = ma.fields.String()


def load_payload(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Typed payload of a stored event (it was validated at intake)."""
    return PAYLOAD_SCHEMAS[event_type].load(payload)
