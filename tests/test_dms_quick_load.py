"""DMS intake's quick envelope check: it vouches only for what marshmallow accepts, loads it the
same, and leaves every refusal (and its field messages) to marshmallow."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any

import marshmallow as ma
import pytest

from app.core.clock import utcnow
from app.core.schemas import BaseSchema, quick_load
from app.members.identifiers import vin_with_check_digit
from app.sync.schemas import DmsEventSchema
from tests import dms_events

VIN = vin_with_check_digit("LFV2A21K", "D0000001")


def _order_placed() -> dict[str, Any]:
    return dms_events._envelope(
        "order.placed",
        {
            "order_no": "SO-Q1",
            "phone": "+86 138-0013-8000",
            "model_code": "MAGOTAN",
            "price_fen": 19_990_000,
            "ordered_on": "2026-11-30",
        },
    )


VALID: dict[str, Callable[[], dict[str, Any]]] = {
    "delivered": lambda: dms_events.delivered("13800138000", VIN),
    "delivered, family": lambda: dms_events.delivered(
        "13800138000", VIN.lower(), purchase_type="family", credit_member_no="91234567890", plate="吉A12345"
    ),
    "cancelled": lambda: dms_events.cancelled("SO-1", VIN, dealer_code="D0102"),
    "service": lambda: dms_events.service(VIN, parts_fen=0, labour_fen=35_000),
    "refund": lambda: dms_events.refund("RO-1", VIN, parts_fen=100, labour_fen=0),
    "insurance": lambda: dms_events.insurance(VIN, premium_fen=450_000),
    "test drive": lambda: dms_events.test_drive("13800138000"),
    "order placed": _order_placed,
}


def _full(schema: DmsEventSchema, document: Any) -> dict[str, Any]:
    """marshmallow's own load, hooks and all (what the quick check stands in for)."""
    return ma.Schema.load(schema, document)


@pytest.mark.parametrize("name", VALID)
def test_a_valid_event_is_vouched_for_and_loads_as_marshmallow_loads_it(app_ctx, name):
    schema = DmsEventSchema(intake=True)
    document = VALID[name]()
    quick = schema._quick_load(copy.deepcopy(document))
    assert quick is not None
    assert quick == _full(schema, copy.deepcopy(document))


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = document
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = document
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


FUTURE = (utcnow() + dt.timedelta(hours=1)).isoformat()
BROKEN = [
    _set("event_id", ""),
    _set("event_id", "has space"),
    _set("event_id", 12),
    _set("event_id", None),
    _drop("event_id"),
    _set("type", "vehicle.exploded"),
    _set("occurred_at", "2026-11-23T10:00:00"),  # no timezone
    _set("occurred_at", "yesterday"),
    _set("dealer_code", ""),
    _set("dealer_code", "D" * 17),
    _set("payload", []),
    _set("payload", None),
    _set("surprise", 1),
    _set("payload.surprise", 1),
    _set("payload.vin", "LFV2A21K9D3000001"),  # wrong check digit
    _set("payload.price_fen", 0),
    _set("payload.price_fen", 1.5),
    _set("payload.price_fen", "100"),
    _set("payload.price_fen", True),
    _set("payload.model_year", 1989),
    _set("payload.model_year", "2026"),
    _set("payload.delivered_on", "2026-13-01"),
    _set("payload.delivered_on", 20261201),
    _set("payload.purchase_type", "stolen"),
    _set("payload.credit_member_no", "123"),
    _drop("payload.model_name"),
    _set("payload.buyer", "周杰"),
    _set("payload.buyer.phone", "12345"),
    _set("payload.buyer.phone", "010-12345678"),  # a landline
    _set("payload.buyer.gender", "x"),
    _set("payload.buyer.customer_type", "alien"),
    _set("payload.buyer.name", ""),
    _set("payload.buyer.surprise", True),
    _drop("payload.buyer.consent"),
    _set("payload.buyer.consent.policy_version", "1999.1"),  # unknown: refused at intake
    _set("payload.buyer.consent.accepted_at", FUTURE),
    _set("payload.buyer.consent.purposes", ["privacy_policy"]),
    _set("payload.buyer.consent.purposes", "service_notifications"),
]


@pytest.mark.parametrize("mutate", BROKEN)
def test_a_broken_event_is_left_to_marshmallow_and_its_messages(app_ctx, mutate):
    schema = DmsEventSchema(intake=True)
    document = VALID["delivered"]()
    mutate(document)
    assert schema._quick_load(copy.deepcopy(document)) is None
    with pytest.raises(ma.ValidationError):
        _full(schema, copy.deepcopy(document))


def test_an_insurance_ending_before_it_starts_is_left_to_marshmallow(app_ctx):
    schema = DmsEventSchema(intake=True)
    document = VALID["insurance"]()
    document["payload"]["ends_on"] = document["payload"]["starts_on"]
    assert schema._quick_load(copy.deepcopy(document)) is None
    with pytest.raises(ma.ValidationError):
        _full(schema, document)


def test_a_schema_with_a_hook_it_does_not_run_is_never_vouched_for():
    class Trimmed(BaseSchema):
        name = ma.fields.String()

        @ma.pre_load
        def _trim(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
            return {key: value.strip() for key, value in data.items()}

    assert quick_load(Trimmed(), {"name": " x "}) is None
    assert Trimmed().load({"name": " x "}) == {"name": "x"}


class _Shapes(BaseSchema):
    """The field kinds the quick check reads itself, next to marshmallow's own reading of them."""

    day = ma.fields.Date()
    at = ma.fields.AwareDateTime()
    at_default_zone = ma.fields.AwareDateTime(default_timezone=dt.UTC)
    blob = ma.fields.Dict()
    keyed = ma.fields.Dict(keys=ma.fields.String(validate=ma.validate.Length(max=2)))
    tags = ma.fields.List(ma.fields.String(validate=ma.validate.OneOf(["a", "b"])))
    counts = ma.fields.List(ma.fields.Integer(strict=True))
    falsy = ma.fields.String(validate=lambda value: value != "no")  # marshmallow 4: what it returns is ignored


SHAPES: list[tuple[str, Any]] = [
    ("day", "2026-12-04"),
    ("day", "20261204"),  # ISO basic: fromisoformat reads it in Python 3.11
    ("day", "2026-02-30"),
    ("day", "2026-12-04T10:00:00"),
    ("day", " 2026-12-04"),
    ("day", ""),
    ("day", 20261204),
    ("day", None),
    ("at", "2026-12-04T10:00:00+08:00"),
    ("at", "2026-12-04T10:00:00Z"),
    ("at", "2026-12-04 10:00:00.123456-05:30"),
    ("at", "2026-12-04T10:00:00"),  # naive
    ("at", "2026-12-04"),
    ("at", "2026-12-04T25:00:00+00:00"),
    ("at", "not a time"),
    ("at", 1733300000),
    ("at_default_zone", "2026-12-04T10:00:00"),
    ("at_default_zone", "2026-12-04T10:00:00+08:00"),
    ("blob", {"a": [1, {"b": None}]}),
    ("blob", {}),
    ("blob", []),
    ("blob", "x"),
    ("keyed", {"ab": 1}),
    ("keyed", {"abc": 1}),
    ("tags", ["a", "b", "a"]),
    ("tags", []),
    ("tags", ["c"]),
    ("tags", ["a", 1]),
    ("tags", "a"),
    ("tags", {"a": 1}),
    ("counts", [1, 2]),
    ("counts", [1, True]),
    ("counts", [1.0]),
    ("falsy", "yes"),
    ("falsy", "no"),
]


@pytest.mark.parametrize(("name", "value"), SHAPES)
def test_each_field_kind_is_vouched_for_exactly_when_marshmallow_accepts_it_and_loads_the_same(name, value):
    document = {name: copy.deepcopy(value)}
    quick = quick_load(_Shapes(), copy.deepcopy(document))
    try:
        full = _Shapes().load(copy.deepcopy(document))
    except ma.ValidationError:
        assert quick is None
        return
    if quick is not None:
        assert quick == full
        assert [type(v) for v in quick.values()] == [type(v) for v in full.values()]
        for key, loaded in quick.items():
            if isinstance(loaded, dt.datetime):
                assert loaded.utcoffset() == full[key].utcoffset()
    else:  # only what the quick check cannot read itself may be left to marshmallow
        assert name in ("keyed", "counts")
