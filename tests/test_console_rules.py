"""The console's rule-set and campaign pages (test client): draft → edit (field-level errors) →
simulate → publish through the rule-set services, audited; who may change and who may only look;
campaign money and grants by status. The browser walk is in test_console_rules_browser.py."""

from __future__ import annotations

import datetime as dt
import html
import json
import re

import pytest
import sqlalchemy as sa

from app.campaigns import redpackets
from app.campaigns.models import Campaign, RedPacketGrant
from app.core.clock import BUSINESS_TZ, business_today, utcnow
from app.core.db import db
from app.core.models import AuditEntry
from app.points import rulesets, simulation
from app.points.models import RuleSet
from app.points.rules import rule_to_json
from tests import dms_events, factories
from tests.console_helpers import post_form, sign_in

BONUS = {
    "code": "service_bonus",
    "name": "保养加赠",
    "event_type": "service.completed",
    "currency": "reward",
    "priority": 5,
    "formula": {"type": "per_amount", "attribute": "parts_fen", "per_fen": 1000, "points": 1},
}


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


@pytest.fixture
def operator(client, app_ctx):
    person, _ = factories.operator("operator")
    sign_in(client, person.username)
    return person


def _draft(client) -> RuleSet:
    response = post_form(client, "/console/rule-sets", {"name": "Q1 保养活动"}, from_page="/console/rule-sets")
    assert response.status_code == 302
    draft = db.session.scalars(sa.select(RuleSet).where(RuleSet.name == "Q1 保养活动")).one()
    assert response.headers["Location"].endswith(f"/console/rule-sets/{draft.id}")
    return draft


def _rule_boxes(draft: RuleSet, *extra: dict) -> list[str]:
    return [json.dumps(rule_to_json(rule), ensure_ascii=False) for rule in draft.rules] + [
        json.dumps(rule, ensure_ascii=False) for rule in extra
    ]


def test_an_operator_drafts_edits_simulates_and_publishes_a_rule_set(client, operator, post_dms):
    dealer = factories.dealer(code="D0101")
    factories.staff(dealer, code="SA0101")
    car = factories.vehicle(owner=factories.member(status="active"))
    post_dms(dms_events.service(car.vin, parts_fen=100_000, labour_fen=0))
    listing = client.get("/console/rule-sets")
    assert listing.status_code == 200 and "data-rule-set" in _text(listing)

    draft = _draft(client)
    page = f"/console/rule-sets/{draft.id}"
    assert len(re.findall(r'<textarea name="rule"', _text(client.get(page)))) == len(draft.rules) + 1

    saved = post_form(client, f"{page}/rules", {"rule": [*_rule_boxes(draft, BONUS), ""]}, from_page=page)
    assert saved.status_code == 302
    db.session.refresh(draft)
    assert "service_bonus" in {rule.code for rule in draft.rules}

    simulated = post_form(client, f"{page}/simulate", {"days": "30"}, from_page=page)
    assert simulated.status_code == 302
    shown = _text(client.get(page))
    db.session.refresh(draft)
    assert draft.status == "simulated"
    assert draft.simulation["proposed"]["by_rule"]["service_bonus"] == 100
    figures = re.search(r'data-testid="simulation-figures".*?</table>', shown, re.S).group(0)
    assert re.search(r'data-figure="reward_points">.*?>100<.*?>200<.*?>100<', figures, re.S)
    assert re.search(r'data-figure="cost_fen">.*?>20\.00<.*?>40\.00<.*?>20\.00<', figures, re.S)
    raw = client.get(page).get_data(as_text=True)
    chart = json.loads(html.unescape(re.search(r'data-chart="([^"]+)"', raw).group(1)))
    assert dict(zip(chart["rules"], chart["series"][1]["data"], strict=True))["service_bonus"] == 100

    start = (utcnow() + dt.timedelta(days=1)).astimezone(BUSINESS_TZ).replace(second=0, microsecond=0)
    published = post_form(
        client, f"{page}/publish", {"effective_from": start.strftime("%Y-%m-%dT%H:%M")}, from_page=page
    )
    assert published.status_code == 302
    db.session.refresh(draft)
    assert (draft.status, draft.effective_from, draft.published_by) == ("published", start, operator.actor)
    actions = db.session.scalars(
        sa.select(AuditEntry.action).where(
            AuditEntry.subject_type == "rule_set", AuditEntry.subject_id == str(draft.id)
        )
    ).all()
    assert sorted(actions) == ["rule_set.drafted", "rule_set.edited", "rule_set.published", "rule_set.simulated"]
    assert {
        row.actor_id for row in db.session.scalars(sa.select(AuditEntry).where(AuditEntry.subject_type == "rule_set"))
    } == {operator.actor}


def test_a_bad_rule_is_refused_with_its_fields_marked_and_nothing_saved(client, operator):
    draft = _draft(client)
    page = f"/console/rule-sets/{draft.id}"
    before = [rule_to_json(rule) for rule in draft.rules]
    bad = dict(BONUS, currency="gold", formula={"type": "per_amount", "attribute": "no_such", "points": 1})

    response = post_form(client, f"{page}/rules", {"rule": [*_rule_boxes(draft, bad)]}, from_page=page)

    assert response.status_code == 422
    text = _text(response)
    position = len(draft.rules)  # the bad rule's box (0-based)
    marked = re.search(rf'<ul class="field-errors" data-field="{position}">(.*?)</ul>', text, re.S).group(1)
    assert "<li>currency: 必须是以下之一：reward, tier。</li>" in marked  # zh_CN by default
    assert "formula › per_fen" in marked
    assert '"currency": "gold"' in text  # what was typed is kept in its box
    db.session.refresh(draft)
    assert [rule_to_json(rule) for rule in draft.rules] == before


def test_text_that_is_not_a_rule_object_is_marked_on_its_box(client, operator):
    draft = _draft(client)
    page = f"/console/rule-sets/{draft.id}"
    response = post_form(client, f"{page}/rules", {"rule": ["{not json", "[1, 2]"]}, from_page=page)
    assert response.status_code == 422
    text = _text(response)
    assert '<ul class="field-errors" data-field="0"><li>不是有效的 JSON（第 1 行，第 2 列）。</li></ul>' in text
    assert '<ul class="field-errors" data-field="1"><li>每条规则是一个 JSON 对象：{ … }。</li></ul>' in text


def test_duplicate_codes_and_bad_days_and_a_past_start_are_field_errors(client, operator):
    draft = _draft(client)
    page = f"/console/rule-sets/{draft.id}"
    twice = post_form(client, f"{page}/rules", {"rule": _rule_boxes(draft, BONUS, BONUS)}, from_page=page)
    assert twice.status_code == 422 and 'data-field="codes"' in _text(twice) and "service_bonus" in _text(twice)

    bad_days = post_form(client, f"{page}/simulate", {"days": "0"}, from_page=page)
    assert bad_days.status_code == 422 and 'data-field="days"' in _text(bad_days)

    unsimulated = post_form(client, f"{page}/publish", {"effective_from": ""}, from_page=page)
    assert unsimulated.status_code == 409 and 'class="problem"' in _text(unsimulated)

    rulesets.record_simulation(draft, simulation.simulate(draft, days=1), actor="test")
    past = (utcnow() - dt.timedelta(days=2)).astimezone(BUSINESS_TZ).strftime("%Y-%m-%dT%H:%M")
    refused = post_form(client, f"{page}/publish", {"effective_from": past}, from_page=page)
    assert refused.status_code == 422 and 'data-field="effective_from"' in _text(refused)
    garbage = post_form(client, f"{page}/publish", {"effective_from": "tomorrow"}, from_page=page)
    assert garbage.status_code == 422 and 'data-field="effective_from"' in _text(garbage)
    year_one = post_form(client, f"{page}/publish", {"effective_from": "0001-01-01T00:00"}, from_page=page)
    assert year_one.status_code == 422 and 'data-field="effective_from"' in _text(year_one)  # was a 500


def test_a_supervisor_may_look_but_not_change_and_an_agent_may_not_look(client, app_ctx):
    draft = rulesets.draft_from_published("look only", actor="test")
    supervisor, _ = factories.operator("supervisor")
    sign_in(client, supervisor.username)
    page = client.get(f"/console/rule-sets/{draft.id}")
    assert page.status_code == 200
    assert '<textarea name="rule"' not in _text(page) and 'data-testid="simulate"' not in _text(page)
    assert 'data-testid="new-draft"' not in _text(client.get("/console/rule-sets"))
    changed = post_form(client, f"/console/rule-sets/{draft.id}/simulate", {"days": "7"}, from_page="/console/")
    assert changed.status_code == 403
    assert client.get("/console/campaigns").status_code == 200

    agent, _ = factories.operator("agent")
    other = client.application.test_client()
    sign_in(other, agent.username)
    assert other.get("/console/rule-sets").status_code == 403
    assert other.get("/console/campaigns").status_code == 403


def spring_campaign() -> Campaign:
    """A running campaign: ¥1,000 budget, ¥5 packets."""
    return redpackets.create_campaign(
        "SPRING",
        name="春季红包",
        budget_fen=100_000,
        amount_fen=500,
        daily_cap=None,
        days=10,
        password=None,
        channels=["qr"],
    )


def test_the_campaign_page_shows_budget_reserved_paid_and_grants_by_status(client, operator):
    campaign = spring_campaign()
    for status in ("reserved", "sending", "sent", "received", "received", "failed"):
        db.session.add(
            RedPacketGrant(
                campaign_id=campaign.id,
                member_id=factories.member().id,
                openid=f"o-{status}-{utcnow().timestamp()}",
                amount_fen=500,
                business_date=business_today(),
                status=status,
            )
        )
    campaign.committed_fen = 2500
    db.session.flush()

    text = _text(client.get("/console/campaigns"))

    row = re.search(r'<tr data-campaign="SPRING">.*?</tr>', text, re.S).group(0)
    money = dict(re.findall(r'data-money="(\w+)">([^<]*)<', row))
    assert money == {
        "budget": "1,000.00",
        "committed": "25.00",
        "reserved": "10.00",
        "paid": "15.00",
        "refunded": "0.00",
        "left": "975.00",
    }
    grants = re.findall(r'data-grants="(\w+)">[^<]*? (\d+) · ¥([\d.,]+)<', row)
    assert {status: (int(count), fen) for status, count, fen in grants} == {
        "reserved": (1, "5.00"),
        "sending": (1, "5.00"),
        "sent": (1, "5.00"),
        "received": (2, "10.00"),
        "failed": (1, "5.00"),
    }
