"""The rule engine: an indicator library, rule validation, and pure evaluation of rules on facts.

A rule = event type + conditions + formula + caps + multipliers + priority + stop-here. Evaluation
here is pure (no database): it turns the facts of one event into candidate awards. Caps, budgets
and the ledger are applied by ``app.points.earning``; simulation calls the same function.

Formulas (integer arithmetic, rounded down):

* ``{"type": "fixed", "points": 500}``
* ``{"type": "per_amount", "attribute": "price_fen", "per_fen": 10000, "points": 1}`` — 1 point per ¥100
* ``{"type": "per_unit", "attribute": "quantity", "points": 10}``

Conditions (all optional, all must hold): ``model_codes``, ``dealer_codes``, ``regions``, ``tiers``,
``customer_types``, ``purchase_types``, ``valid_from`` / ``valid_to`` (ISO datetimes) and
``attributes``: ``[{"name": "service_type", "op": "in", "value": ["maintenance"]}]``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import marshmallow as ma

from app.core import tunables
from app.core.clock import to_business
from app.core.i18n import _l
from app.core.schemas import BaseSchema, Length, OneOf, Range
from app.points.models import CURRENCIES, FUNDERS
from app.tiers.models import TIERS

#: Event types and the attributes a rule may use (the indicator library, 指标库).
INDICATORS: dict[str, dict[str, str]] = {
    "vehicle.delivered": {
        "price_fen": "fen",
        "model_code": "str",
        "purchase_type": "str",
        "model_year": "int",
    },
    "service.completed": {
        "parts_fen": "fen",
        "labour_fen": "fen",
        "total_fen": "fen",
        "service_type": "str",
        "mileage_km": "int",
        "model_code": "str",
    },
    "insurance.renewed": {"premium_fen": "fen", "model_code": "str"},
    "test_drive.completed": {"model_code": "str"},
    "referral.lead": {"role": "str"},
    "referral.test_drive": {"model_code": "str", "role": "str"},
    "referral.ordered": {"price_fen": "fen", "model_code": "str", "role": "str"},
    "referral.delivered": {"price_fen": "fen", "model_code": "str", "role": "str"},
    "enrollment.welcome": {"channel": "str"},
    "activity.dealer_visit": {},
    "activity.survey": {},
    "activity.profile_completed": {},
    "activity.daily_sign_in": {},
    "activity.article_read": {},
    "activity.content_shared": {},
}
#: Facts about the member and place, available to every rule.
CONTEXT_ATTRIBUTES = ("dealer_code", "region", "tier", "customer_type", "city")

TIER_ACCELERATION = tunables.define(
    "points.tier_acceleration_percent",
    {"silver": 0, "gold": 10, "platinum": 20, "diamond": 30},
    "Extra reward points by tier, in percent, for rules with the tier multiplier",
)
EXCLUDED_CUSTOMER_TYPES = tunables.define(
    "points.excluded_customer_types",
    ["fleet", "taxi", "driving_school", "government"],
    "Customer types that earn no points",
)
OPERATORS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte")


class AttributeConditionSchema(BaseSchema):
    name = ma.fields.String(required=True, validate=Length(min=1, max=48))
    op = ma.fields.String(required=True, validate=OneOf(OPERATORS))
    value = ma.fields.Raw(required=True)


class ConditionsSchema(BaseSchema):
    model_codes = ma.fields.List(ma.fields.String())
    dealer_codes = ma.fields.List(ma.fields.String())
    regions = ma.fields.List(ma.fields.String())
    tiers = ma.fields.List(ma.fields.String(validate=OneOf(TIERS)))
    customer_types = ma.fields.List(ma.fields.String())
    purchase_types = ma.fields.List(ma.fields.String())
    valid_from = ma.fields.AwareDateTime()
    valid_to = ma.fields.AwareDateTime()
    attributes = ma.fields.List(ma.fields.Nested(AttributeConditionSchema))


class FormulaSchema(BaseSchema):
    type = ma.fields.String(required=True, validate=OneOf(("fixed", "per_amount", "per_unit")))
    points = ma.fields.Integer(required=True, strict=True, validate=Range(min=1))
    attribute = ma.fields.String()
    per_fen = ma.fields.Integer(strict=True, validate=Range(min=1))

    @ma.validates_schema
    def _complete(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if data["type"] != "fixed" and not data.get("attribute"):
            raise ma.ValidationError(str(_l("This formula needs an attribute.")), "attribute")
        if data["type"] == "per_amount" and not data.get("per_fen"):
            raise ma.ValidationError(str(_l("This formula needs per_fen.")), "per_fen")


class PeriodCapsSchema(BaseSchema):
    day = ma.fields.Integer(strict=True, validate=Range(min=0))
    month = ma.fields.Integer(strict=True, validate=Range(min=0))
    year = ma.fields.Integer(strict=True, validate=Range(min=0))


class CapsSchema(BaseSchema):
    per_member = ma.fields.Nested(PeriodCapsSchema)


class MultipliersSchema(BaseSchema):
    tier = ma.fields.Boolean()
    birthday_month = ma.fields.Integer(strict=True, validate=Range(min=1, max=10))


class RuleSchema(BaseSchema):
    """A rule as operators write it (API, CLI, JSON files)."""

    code = ma.fields.String(required=True, validate=Length(min=1, max=48))
    name = ma.fields.String(required=True, validate=Length(min=1, max=128))
    event_type = ma.fields.String(required=True, validate=OneOf(sorted(INDICATORS)))
    currency = ma.fields.String(required=True, validate=OneOf(CURRENCIES))
    priority = ma.fields.Integer(strict=True, load_default=100)
    stop_here = ma.fields.Boolean(load_default=False)
    conditions = ma.fields.Nested(ConditionsSchema, load_default=dict)
    formula = ma.fields.Nested(FormulaSchema, required=True)
    caps = ma.fields.Nested(CapsSchema, load_default=dict)
    multipliers = ma.fields.Nested(MultipliersSchema, load_default=dict)
    funder = ma.fields.String(load_default="oem", validate=OneOf(FUNDERS))
    pending_days = ma.fields.Integer(strict=True, load_default=0, validate=Range(min=0, max=365))
    budget_points = ma.fields.Integer(strict=True, allow_none=True, load_default=None, validate=Range(min=1))

    @ma.validates_schema
    def _known_attributes(self, data: dict[str, Any], **_kwargs: Any) -> None:
        known = set(INDICATORS.get(data["event_type"], {})) | set(CONTEXT_ATTRIBUTES)
        formula_attribute = data["formula"].get("attribute")
        if formula_attribute and formula_attribute not in known:
            raise ma.ValidationError({"formula": {"attribute": [str(_l("Unknown attribute for this event type."))]}})
        for condition in data["conditions"].get("attributes", []):
            if condition["name"] not in known:
                raise ma.ValidationError(
                    {"conditions": {"attributes": [str(_l("Unknown attribute for this event type."))]}}
                )


def rule_to_json(rule: Any) -> dict[str, Any]:
    """A stored rule as the JSON operators edit (round-trips through ``RuleSchema``)."""
    return {
        "code": rule.code,
        "name": rule.name,
        "event_type": rule.event_type,
        "currency": rule.currency,
        "priority": rule.priority,
        "stop_here": rule.stop_here,
        "conditions": rule.conditions,
        "formula": rule.formula,
        "caps": rule.caps,
        "multipliers": rule.multipliers,
        "funder": rule.funder,
        "pending_days": rule.pending_days,
        "budget_points": rule.budget_points,
    }


@dataclass(frozen=True)
class Facts:
    """Everything a rule may look at for one event."""

    event_type: str
    occurred_at: dt.datetime
    attributes: dict[str, Any]
    dealer_code: str | None = None
    region: str | None = None
    tier: str = "silver"
    customer_type: str = "private"
    city: str | None = None
    birthday: dt.date | None = None

    def get(self, name: str) -> Any:
        if name in CONTEXT_ATTRIBUTES:
            return getattr(self, name)
        return self.attributes.get(name)


@dataclass(frozen=True)
class Candidate:
    """One rule's award before caps and budgets."""

    rule_code: str
    currency: str
    points: int
    basis_fen: int | None
    funder: str
    pending_days: int
    caps: dict[str, Any] = field(default_factory=dict)
    budget_points: int | None = None


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if actual is None:
        return op in ("ne", "not_in")
    comparisons = {
        "eq": lambda: actual == expected,
        "ne": lambda: actual != expected,
        "in": lambda: actual in expected,
        "not_in": lambda: actual not in expected,
        "gt": lambda: actual > expected,
        "gte": lambda: actual >= expected,
        "lt": lambda: actual < expected,
        "lte": lambda: actual <= expected,
    }
    try:
        return bool(comparisons[op]())
    except TypeError:
        return False


_LIST_CONDITIONS = {
    "model_codes": "model_code",
    "dealer_codes": "dealer_code",
    "regions": "region",
    "tiers": "tier",
    "customer_types": "customer_type",
    "purchase_types": "purchase_type",
}


def matches(conditions: dict[str, Any], facts: Facts) -> bool:
    for key, attribute in _LIST_CONDITIONS.items():
        allowed = conditions.get(key)
        if allowed and facts.get(attribute) not in allowed:
            return False
    if conditions.get("valid_from") and facts.occurred_at < _as_datetime(conditions["valid_from"]):
        return False
    if conditions.get("valid_to") and facts.occurred_at >= _as_datetime(conditions["valid_to"]):
        return False
    return all(_compare(c["op"], facts.get(c["name"]), c["value"]) for c in conditions.get("attributes", []))


def _as_datetime(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


def base_points(formula: dict[str, Any], facts: Facts) -> tuple[int, int | None]:
    """Points from the formula, and the amount (fen) they were computed from."""
    if formula["type"] == "fixed":
        return formula["points"], None
    amount = facts.get(formula["attribute"]) or 0
    if formula["type"] == "per_amount":
        return (int(amount) // formula["per_fen"]) * formula["points"], int(amount)
    return int(amount) * formula["points"], None


def apply_multipliers(points: int, multipliers: dict[str, Any], facts: Facts) -> int:
    if multipliers.get("tier"):
        percent = TIER_ACCELERATION.value().get(facts.tier, 0)
        points = points * (100 + percent) // 100
    factor = multipliers.get("birthday_month")
    if factor and facts.birthday and facts.birthday.month == to_business(facts.occurred_at).month:
        points *= factor
    return points


def evaluate(rules: list[Any], facts: Facts) -> list[Candidate]:
    """Candidate awards for ``facts``: matching rules in priority order, until one says stop."""
    if facts.customer_type in EXCLUDED_CUSTOMER_TYPES.value():
        return []
    candidates = []
    for rule in sorted(rules, key=lambda r: (r.priority, r.code)):
        if rule.event_type != facts.event_type or not matches(rule.conditions or {}, facts):
            continue
        points, basis = base_points(rule.formula, facts)
        if rule.currency == "reward":
            points = apply_multipliers(points, rule.multipliers or {}, facts)
        if points > 0:
            candidates.append(
                Candidate(
                    rule_code=rule.code,
                    currency=rule.currency,
                    points=points,
                    basis_fen=basis,
                    funder=rule.funder,
                    pending_days=rule.pending_days,
                    caps=rule.caps or {},
                    budget_points=rule.budget_points,
                )
            )
        if rule.stop_here:
            break
    return candidates
