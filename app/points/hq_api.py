"""Program operations API: earning rule sets (draft → simulate → publish) and dealer settlement."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response

from app.core.errors import ValidationFailed
from app.core.http import Blueprint
from app.core.i18n import _l
from app.core.schemas import parse_month
from app.operators.auth import current_operator, require_operator
from app.points import rulesets, settlement, simulation
from app.points.hq_schemas import (
    NewRuleSetArgs,
    PaymentArgs,
    PublishArgs,
    RulesArgs,
    RuleSetSchema,
    SettlementSchema,
    SimulateArgs,
)
from app.points.models import RuleSet
from app.points.rules import rule_to_json

blp = Blueprint(
    "hq_program", __name__, url_prefix="/api/v1/program", description="HQ program operations: rule sets and settlement"
)
BEARER = [{"bearerAuth": []}]


def _rule_set(rule_set: RuleSet) -> dict[str, Any]:
    return {
        "id": rule_set.id,
        "name": rule_set.name,
        "status": rule_set.status,
        "effective_from": rule_set.effective_from,
        "effective_to": rule_set.effective_to,
        "based_on_id": rule_set.based_on_id,
        "simulated_at": rule_set.simulated_at,
        "simulation": rule_set.simulation,
        "published_by": rule_set.published_by,
        "rules": [rule_to_json(rule) for rule in rule_set.rules],
    }


@blp.route("/rule-sets")
@blp.doc(security=BEARER)
@blp.response(200, RuleSetSchema(many=True))
@require_operator("operator", "supervisor")
def list_rule_sets() -> list[dict[str, Any]]:
    return [_rule_set(r) for r in rulesets.list_sets()]


@blp.route("/rule-sets", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(NewRuleSetArgs)
@blp.response(201, RuleSetSchema)
@require_operator("operator")
def new_rule_set(args: dict[str, Any]) -> dict[str, Any]:
    """Start a draft from the rules in force."""
    return _rule_set(rulesets.draft_from_published(args["name"], actor=current_operator().actor))


@blp.route("/rule-sets/<id:rule_set_id>")
@blp.doc(security=BEARER)
@blp.response(200, RuleSetSchema)
@require_operator("operator", "supervisor")
def get_rule_set(rule_set_id: int) -> dict[str, Any]:
    return _rule_set(rulesets.get(rule_set_id))


@blp.route("/rule-sets/<id:rule_set_id>/rules", methods=["PUT"])
@blp.doc(security=BEARER)
@blp.arguments(RulesArgs)
@blp.response(200, RuleSetSchema)
@blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
@require_operator("operator")
def put_rules(args: dict[str, Any], rule_set_id: int) -> dict[str, Any]:
    """Replace the draft's rules (validated against the indicator library)."""
    rule_set = rulesets.replace_rules(rulesets.get(rule_set_id), args["rules"], actor=current_operator().actor)
    return _rule_set(rule_set)


@blp.route("/rule-sets/<id:rule_set_id>/simulate", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(SimulateArgs)
@blp.response(200, RuleSetSchema)
@require_operator("operator")
def simulate_rule_set(args: dict[str, Any], rule_set_id: int) -> dict[str, Any]:
    """Replay the last N days of real events against the draft; the report is kept on the set."""
    rule_set = rulesets.get(rule_set_id)
    report = simulation.simulate(rule_set, days=args["days"])
    rulesets.record_simulation(rule_set, report, actor=current_operator().actor)
    return _rule_set(rule_set)


@blp.route("/rule-sets/<id:rule_set_id>/publish", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(PublishArgs)
@blp.response(200, RuleSetSchema)
@blp.alt_response(409, response="CONFLICT")
@require_operator("operator")
def publish_rule_set(args: dict[str, Any], rule_set_id: int) -> dict[str, Any]:
    rule_set = rulesets.publish(
        rulesets.get(rule_set_id), actor=current_operator().actor, effective_from=args.get("effective_from")
    )
    return _rule_set(rule_set)


def _month(value: str) -> dt.date:
    month = parse_month(value)
    if month is None:
        raise ValidationFailed(fields={"month": [_l("Use the form YYYY-MM.")]})
    return month


@blp.route("/settlements/<month>", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(201, SettlementSchema(many=True))
@require_operator("operator")
def generate_settlement(month: str) -> list[dict[str, Any]]:
    """Compute (or refresh the drafts of) the month's dealer statements."""
    settlement.generate(_month(month), actor=current_operator().actor)
    return [settlement.as_dict(s, d) for s, d in settlement.statements_for(_month(month))]


@blp.route("/settlements/<month>")
@blp.doc(security=BEARER)
@blp.response(200, SettlementSchema(many=True))
@require_operator("operator", "supervisor")
def list_settlement(month: str) -> list[dict[str, Any]]:
    return [settlement.as_dict(s, d) for s, d in settlement.statements_for(_month(month))]


@blp.route("/settlements/<month>.csv")
@blp.doc(security=BEARER, responses={200: {"description": "CSV", "content": {"text/csv": {}}}})
@require_operator("operator", "supervisor")
def settlement_csv(month: str) -> Response:
    body = settlement.to_csv(_month(month))
    return Response(
        body,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="settlement-{month}.csv"'},
    )


def _advance(statement_id: int, to_status: str, payment_ref: str | None = None) -> dict[str, Any]:
    statement = settlement.advance(statement_id, to_status, actor=current_operator().actor, payment_ref=payment_ref)
    return settlement.as_dict(statement)


@blp.route("/settlements/statements/<id:statement_id>/review", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, SettlementSchema)
@require_operator("operator")
def review_statement(statement_id: int) -> dict[str, Any]:
    return _advance(statement_id, "reviewed")


@blp.route("/settlements/statements/<id:statement_id>/approve", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, SettlementSchema)
@require_operator("supervisor")
def approve_statement(statement_id: int) -> dict[str, Any]:
    return _advance(statement_id, "approved")


@blp.route("/settlements/statements/<id:statement_id>/pay", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(PaymentArgs)
@blp.response(200, SettlementSchema)
@require_operator("operator")
def pay_statement(args: dict[str, Any], statement_id: int) -> dict[str, Any]:
    return _advance(statement_id, "paid", args.get("payment_ref"))
