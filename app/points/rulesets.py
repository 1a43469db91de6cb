"""Rule-set lifecycle: draft → simulated → published (SPEC §3, "validate rules by simulation").

* ``draft_from_published`` copies the rules in force into a new draft;
* ``replace_rules`` validates and stores edited rules (a simulated draft becomes a draft again);
* ``simulate`` replays recent real events and stores the report (status ``simulated``);
* ``publish`` requires a simulation of exactly the rules being published, ends the set in force
  at ``effective_from`` and puts this one in force from then on.

Every step is audited.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import marshmallow as ma
import sqlalchemy as sa

from app.core import audit
from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.i18n import _l
from app.points.earning import forget_published_rule_sets, published_rule_set
from app.points.models import EarningRule, RuleSet
from app.points.rules import RuleSchema, rule_to_json

_rule_schema = RuleSchema()


def get(rule_set_id: int) -> RuleSet:
    rule_set = db.session.get(RuleSet, rule_set_id)
    if rule_set is None:
        raise NotFound()
    return rule_set


def list_sets(limit: int = 50) -> list[RuleSet]:
    return list(db.session.scalars(sa.select(RuleSet).order_by(RuleSet.id.desc()).limit(limit)))


def draft_from_published(name: str, *, actor: str) -> RuleSet:
    current = published_rule_set(utcnow())
    draft = RuleSet(name=name, status="draft", based_on_id=current.id if current else None, created_by=actor)
    db.session.add(draft)
    db.session.flush()
    if current is not None:
        for rule in current.rules:
            db.session.add(EarningRule(rule_set_id=draft.id, **rule_to_json(rule)))
    db.session.flush()
    audit.record(
        actor=("staff", actor),
        action="rule_set.drafted",
        subject=("rule_set", draft.id),
        details={"based_on": draft.based_on_id},
    )
    return draft


def validate_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validated, normalized rule JSON; field errors are keyed by the rule's position."""
    errors: dict[str, Any] = {}
    normalized = []
    for index, raw in enumerate(rules):
        try:
            normalized.append(_rule_schema.dump(_rule_schema.load(raw)))
        except ma.ValidationError as err:
            errors[str(index)] = err.normalized_messages()
    codes = [rule["code"] for rule in normalized]
    duplicates = sorted({code for code in codes if codes.count(code) > 1})
    if duplicates:
        errors["codes"] = [
            str(_l("Rule codes must be unique in a rule set: {codes}").format(codes=", ".join(duplicates)))
        ]
    if errors:
        raise ValidationFailed(fields={"rules": errors})
    return normalized


def replace_rules(rule_set: RuleSet, rules: list[dict[str, Any]], *, actor: str) -> RuleSet:
    if rule_set.status not in ("draft", "simulated"):
        raise Conflict(_l("Only a draft rule set can be edited."))
    normalized = validate_rules(rules)
    rule_set.rules.clear()
    db.session.flush()
    for rule in normalized:
        rule_set.rules.append(EarningRule(**rule))
    rule_set.status = "draft"
    rule_set.simulation = None
    rule_set.simulated_at = None
    rule_set.updated_at = utcnow()
    db.session.flush()
    audit.record(
        actor=("staff", actor),
        action="rule_set.edited",
        subject=("rule_set", rule_set.id),
        details={"rules": len(normalized)},
    )
    return rule_set


def record_simulation(rule_set: RuleSet, report: dict[str, Any], *, actor: str) -> None:
    if rule_set.status not in ("draft", "simulated"):
        raise Conflict(_l("Only a draft rule set can be simulated."))
    rule_set.simulation = report
    rule_set.simulated_at = utcnow()
    rule_set.status = "simulated"
    db.session.flush()
    audit.record(
        actor=("staff", actor),
        action="rule_set.simulated",
        subject=("rule_set", rule_set.id),
        details={"days": report.get("days"), "events": report.get("events")},
    )


def publish(rule_set: RuleSet, *, actor: str, effective_from: dt.datetime | None = None) -> RuleSet:
    if rule_set.status != "simulated" or rule_set.simulated_at is None:
        raise Conflict(_l("Simulate the rule set before publishing it."))
    start = effective_from or utcnow()
    if start < utcnow() - dt.timedelta(minutes=5):
        raise ValidationFailed(fields={"effective_from": [_l("A rule set cannot take effect in the past.")]})
    previous = db.session.scalars(
        sa.select(RuleSet)
        .where(
            RuleSet.status == "published",
            sa.or_(RuleSet.effective_to.is_(None), RuleSet.effective_to > start),
        )
        .with_for_update()
    ).all()
    for older in previous:
        if older.effective_from >= start:
            older.status = "retired"  # a future set that never took effect
        else:
            older.effective_to = start
    rule_set.status = "published"
    rule_set.effective_from = start
    rule_set.published_by = actor
    rule_set.published_at = utcnow()
    db.session.flush()
    forget_published_rule_sets()
    audit.record(
        actor=("staff", actor),
        action="rule_set.published",
        subject=("rule_set", rule_set.id),
        details={"effective_from": start.isoformat(), "replaces": [o.id for o in previous]},
    )
    return rule_set
