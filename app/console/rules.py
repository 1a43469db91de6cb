"""Program operators' pages: earning rule sets (list, draft, edit, simulate, publish) and red-packet
campaigns (budget, reserved, paid, grants by status). Supervisors may look, not change.

The same domain services as the HQ API (``points/hq_api.py``): ``rulesets`` validates, stores and
audits every step, ``simulation`` replays the last N days of stored events. Views parse the form,
call one service and render; a refusal re-renders the page with field-level messages.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask import flash, redirect, render_template, request, url_for

from app.campaigns import redpackets
from app.campaigns.models import GRANT_STATUSES
from app.console.session import console_view, current
from app.console.views import bp
from app.core.clock import parse_local_moment
from app.core.errors import AppError, ValidationFailed
from app.core.i18n import _, _l
from app.points import rulesets, simulation
from app.points.models import RuleSet
from app.points.rules import rule_to_json

EDITORS = ("operator",)
READERS = ("operator", "supervisor")
SIMULATION_DAYS = 30
#: What the figures table and the chart compare, in this order.
FIGURES = {
    "reward_points": _l("Reward points"),
    "tier_points": _l("Tier points"),
    "cost_fen": _l("Cost (¥)"),
    "members_affected": _l("Members affected"),
}
STATUSES = {
    "draft": _l("Draft"),
    "simulated": _l("Simulated"),
    "published": _l("Published"),
    "retired": _l("Retired"),
    "active": _l("Active"),
    "paused": _l("Paused"),
    "ended": _l("Ended"),
}
GRANTS = {
    "reserved": _l("Reserved"),
    "sending": _l("Sending"),
    "sent": _l("Sent"),
    "received": _l("Received"),
    "failed": _l("Failed"),
    "refunding": _l("Refunding"),
    "refunded": _l("Refunded"),
}


@bp.route("/rule-sets")
@console_view(*READERS, scope="operator")
def rule_sets() -> Any:
    """Every rule set, newest first, with the one in force marked."""
    return render_template("console/rule_sets.html", sets=rulesets.list_sets(), statuses=STATUSES)


@bp.route("/rule-sets", methods=["POST"])
@console_view(*EDITORS, scope="operator")
def new_rule_set() -> Any:
    """A draft copied from the rules in force (audited by the service)."""
    name = request.form.get("name", "").strip()
    if not name or len(name) > 128:
        errors = {"name": [_("Give a name of at most 128 characters.")]}
        page = render_template("console/rule_sets.html", sets=rulesets.list_sets(), statuses=STATUSES, errors=errors)
        return page, 422
    draft = rulesets.draft_from_published(name, actor=current().actor)
    flash(_("Draft created from the rules in force."))
    return redirect(url_for("console.rule_set", rule_set_id=draft.id))


def _render(rule_set: RuleSet, *, status: int = 200, texts: list[str] | None = None, **extra: Any) -> Any:
    rules = texts if texts is not None else [_pretty(rule_to_json(rule)) for rule in rule_set.rules]
    page = render_template(
        "console/rule_set.html",
        rule_set=rule_set,
        rule_texts=rules,
        editable=current().role in EDITORS and rule_set.status in ("draft", "simulated"),
        can_publish=current().role in EDITORS and rule_set.status == "simulated",
        report=rule_set.simulation,
        figures=FIGURES,
        statuses=STATUSES,
        chart=_chart(rule_set.simulation),
        days=SIMULATION_DAYS,
        **extra,
    )
    return page, status


def _pretty(rule: dict[str, Any]) -> str:
    return json.dumps(rule, ensure_ascii=False, indent=2)


def _chart(report: dict[str, Any] | None) -> str | None:
    """The chart's data (JSON for ``rules.js``): points per rule, in force vs this set."""
    if not report:
        return None
    proposed, published = report["proposed"]["by_rule"], report["published"]["by_rule"]
    codes = sorted(set(proposed) | set(published))
    return json.dumps(
        {
            "rules": codes,
            "series": [
                {"name": str(_("Rules in force")), "data": [published.get(code, 0) for code in codes]},
                {"name": str(_("This rule set")), "data": [proposed.get(code, 0) for code in codes]},
            ],
        },
        ensure_ascii=False,
    )


@bp.route("/rule-sets/<id:rule_set_id>")
@console_view(*READERS, scope="operator")
def rule_set(rule_set_id: int) -> Any:
    return _render(rulesets.get(rule_set_id))


def _flatten(messages: Any, prefix: str = "") -> list[str]:
    """Nested field messages as ``formula › attribute: message`` lines."""
    if isinstance(messages, dict):
        lines: list[str] = []
        for key, value in messages.items():
            lines += _flatten(value, f"{prefix} › {key}" if prefix else str(key))
        return lines
    if isinstance(messages, list | tuple):
        return [line for message in messages for line in _flatten(message, prefix)]
    return [f"{prefix}: {messages}" if prefix else str(messages)]


def _parse_rules(texts: list[str]) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The textareas as rule objects; a text that is not a JSON object is an error of that rule."""
    rules, errors = [], {}
    for index, text in enumerate(texts):
        try:
            rule = json.loads(text)
        except ValueError as error:
            errors[str(index)] = [
                _("Not valid JSON (line %(line)s, column %(column)s).", line=error.lineno, column=error.colno)
            ]  # type: ignore[attr-defined]
            continue
        if not isinstance(rule, dict):
            errors[str(index)] = [_("A rule is a JSON object: { … }.")]
            continue
        rules.append(rule)
    return rules, errors


@bp.route("/rule-sets/<id:rule_set_id>/rules", methods=["POST"])
@console_view(*EDITORS, scope="operator")
def save_rules(rule_set_id: int) -> Any:
    """Replace the draft's rules; an empty box removes its rule, the last box adds one."""
    found = rulesets.get(rule_set_id)
    texts = [text.strip() for text in request.form.getlist("rule") if text.strip()]
    rules, errors = _parse_rules(texts)
    if not errors:
        try:
            rulesets.replace_rules(found, rules, actor=current().actor)
        except ValidationFailed as error:
            errors = {key: _flatten(value) for key, value in error.fields.get("rules", {}).items()}
        except AppError as error:
            return _render(found, status=error.status, texts=texts, problem=error.message)
    if errors:
        problem = _("The rules were not saved: correct the marked rules.")
        return _render(found, status=422, texts=texts, rule_errors=errors, problem=problem)
    flash(_("Rules saved. Simulate them before publishing."))
    return redirect(url_for("console.rule_set", rule_set_id=found.id))


def _days(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 365:
        raise ValidationFailed(fields={"days": [_("Between 1 and 365 days.")]})
    return int(text)


@bp.route("/rule-sets/<id:rule_set_id>/simulate", methods=["POST"])
@console_view(*EDITORS, scope="operator")
def simulate(rule_set_id: int) -> Any:
    """Replay the last N days of stored events against this set (nothing is written to the ledger)."""
    found = rulesets.get(rule_set_id)
    try:
        days = _days(request.form.get("days", str(SIMULATION_DAYS)).strip())
        rulesets.record_simulation(found, simulation.simulate(found, days=days), actor=current().actor)
    except ValidationFailed as error:
        return _render(found, status=error.status, errors=error.fields)
    except AppError as error:
        return _render(found, status=error.status, problem=error.message)
    flash(_("Simulated over the last %(days)s days.", days=days))
    return redirect(url_for("console.rule_set", rule_set_id=found.id) + "#simulation")


def _effective_from(text: str) -> dt.datetime | None:
    """A ``datetime-local`` value in Beijing time (empty: now)."""
    if not text:
        return None
    try:
        return parse_local_moment(text)
    except ValueError:
        raise ValidationFailed(fields={"effective_from": [_("Give a date and time.")]}) from None


@bp.route("/rule-sets/<id:rule_set_id>/publish", methods=["POST"])
@console_view(*EDITORS, scope="operator")
def publish(rule_set_id: int) -> Any:
    """Put the simulated set in force from ``effective_from`` (the set in force then ends)."""
    found = rulesets.get(rule_set_id)
    try:
        start = _effective_from(request.form.get("effective_from", "").strip())
        rulesets.publish(found, actor=current().actor, effective_from=start)
    except ValidationFailed as error:
        return _render(found, status=error.status, errors=error.fields)
    except AppError as error:
        return _render(found, status=error.status, problem=error.message)
    flash(_("Rule set published."))
    return redirect(url_for("console.rule_set", rule_set_id=found.id))


@bp.route("/campaigns")
@console_view(*READERS, scope="operator")
def campaigns() -> Any:
    """Red-packet campaigns: budget, reserved, paid out, refunded, left; grants by status."""
    return render_template(
        "console/campaigns.html",
        overview=redpackets.payouts(),
        grant_statuses=GRANT_STATUSES,
        grants=GRANTS,
        statuses=STATUSES,
    )


@bp.app_template_filter("as_yuan")
def _as_yuan(fen: int | None) -> str:
    """Integer fen shown as yuan with two decimals (no float on the way)."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{yuan:,}.{cents:02d}"


@bp.app_template_filter("label_of")
def _label_of(code: str | None, table: dict[str, Any]) -> Any:
    return table.get(code, code) if code else ""
