"""Rules as data: draft → simulated → published, caps, budgets, priority and stop-here."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import Conflict, ValidationFailed
from app.points import rulesets, simulation
from app.points.earning import published_rule_set
from app.points.models import PointAccount, PointEntry
from app.points.rules import Facts, evaluate, rule_to_json
from tests import dms_events, factories

BONUS = {
    "code": "service_double_campaign",
    "name": "双倍积分活动",
    "event_type": "service.completed",
    "currency": "reward",
    "priority": 5,
    "formula": {"type": "per_amount", "attribute": "parts_fen", "per_fen": 1000, "points": 1},
    "budget_points": 250,
}


@pytest.fixture
def shop(app_ctx):
    dealer = factories.dealer(code="D0101")
    factories.staff(dealer, code="SA0101")
    return dealer


def publish_with(extra_rules, *, days=30):
    draft = rulesets.draft_from_published("with campaign", actor="test")
    rules = [rule_to_json(r) for r in draft.rules] + extra_rules
    rulesets.replace_rules(draft, rules, actor="test")
    rulesets.record_simulation(draft, simulation.simulate(draft, days=days), actor="test")
    return rulesets.publish(draft, actor="test")


def test_the_default_rule_set_is_published_from_the_migrations(app_ctx):
    rule_set = published_rule_set(utcnow())
    codes = {rule.code for rule in rule_set.rules}
    assert {
        "car_purchase_reward",
        "service_parts_reward",
        "welcome_gift",
        "insurance_renewal_reward",
    } <= codes


def test_invalid_rules_are_refused_with_field_errors(app_ctx):
    draft = rulesets.draft_from_published("bad", actor="test")
    bad = dict(BONUS, formula={"type": "per_amount", "attribute": "price_fen", "points": 1}, currency="gold")
    with pytest.raises(ValidationFailed) as excinfo:
        rulesets.replace_rules(draft, [bad, dict(BONUS), dict(BONUS)], actor="test")
    errors = excinfo.value.fields["rules"]
    assert set(errors["0"]) == {"currency", "formula"}
    assert "codes" in errors


def test_publishing_requires_a_simulation_of_exactly_these_rules(app_ctx):
    draft = rulesets.draft_from_published("unsimulated", actor="test")
    with pytest.raises(Conflict):
        rulesets.publish(draft, actor="test")
    rulesets.record_simulation(draft, simulation.simulate(draft, days=7), actor="test")
    rulesets.replace_rules(draft, [rule_to_json(r) for r in draft.rules], actor="test")  # edited after
    assert draft.status == "draft"
    with pytest.raises(Conflict):
        rulesets.publish(draft, actor="test")


def test_simulation_replays_real_events_and_reports_the_difference(shop, post_dms):
    member = factories.member(status="active")
    car = factories.vehicle(owner=member)
    for _ in range(2):
        post_dms(dms_events.service(car.vin, parts_fen=100_000, labour_fen=0))  # 100 + 100 reward, 500 + 500 tier
    draft = rulesets.draft_from_published("campaign", actor="test")
    rulesets.replace_rules(draft, [rule_to_json(r) for r in draft.rules] + [BONUS], actor="test")
    report = simulation.simulate(draft, days=30)
    assert report["events"] == 2
    assert report["published"]["reward_points"] == 200
    assert report["proposed"]["by_rule"]["service_double_campaign"] == 200
    assert report["difference"]["reward_points"] == 200
    assert report["difference"]["cost_fen"] == 200 * 20  # 5 points = ¥1
    assert report["proposed"]["members_affected"] == 1
    # Simulating wrote nothing.
    assert db.session.scalar(sa.select(sa.func.count()).where(PointEntry.rule_code == "service_double_campaign")) == 0


def test_a_campaign_never_issues_more_than_its_reserve(shop, post_dms):
    publish_with([BONUS])
    members = [factories.member(status="active") for _ in range(3)]
    for member in members:
        post_dms(dms_events.service(factories.vehicle(owner=member).vin, parts_fen=100_000, labour_fen=0))
    bonus = db.session.scalars(sa.select(PointEntry.points).where(PointEntry.rule_code == "service_double_campaign"))
    assert list(bonus) == [100, 100, 50]  # 250 reserve: the third member gets what is left


def test_the_published_set_in_force_at_the_event_time_applies(shop, post_dms):
    member = factories.member(status="active")
    car = factories.vehicle(owner=member)
    before = utcnow() - dt.timedelta(days=2)
    publish_with([dict(BONUS, budget_points=None)])
    post_dms(dms_events.service(car.vin, parts_fen=100_000, labour_fen=0, occurred_at=before))
    post_dms(dms_events.service(car.vin, parts_fen=100_000, labour_fen=0))
    assert [
        e.rule_code
        for e in db.session.scalars(
            sa.select(PointEntry).where(PointEntry.currency == "reward").order_by(PointEntry.id)
        )
    ] == ["service_parts_reward", "service_double_campaign", "service_parts_reward"]
    db.session.expire_all()
    account = db.session.get(PointAccount, member.id)
    assert (account.reward_pending, account.reward_available) == (200, 100)  # the campaign has no lock period


def test_priority_and_stop_here_decide_which_rules_apply(app_ctx):
    class Rule:
        def __init__(self, code, priority, stop_here=False):
            self.code, self.priority, self.stop_here = code, priority, stop_here
            self.event_type, self.currency, self.conditions = "activity.survey", "reward", {}
            self.formula, self.multipliers, self.caps = {"type": "fixed", "points": 10}, {}, {}
            self.funder, self.pending_days, self.budget_points = "oem", 0, None

    facts = Facts(event_type="activity.survey", occurred_at=utcnow(), attributes={})
    rules = [Rule("late", 30), Rule("first", 10, stop_here=True), Rule("second", 20)]
    assert [c.rule_code for c in evaluate(rules, facts)] == ["first"]
    rules[1].stop_here = False
    assert [c.rule_code for c in evaluate(rules, facts)] == ["first", "second", "late"]


@pytest.mark.parametrize(
    ("conditions", "matches"),
    [
        ({"model_codes": ["MAGOTAN"]}, True),
        ({"model_codes": ["TAYRON"]}, False),
        ({"regions": ["north"], "tiers": ["gold", "silver"]}, True),
        ({"attributes": [{"name": "parts_fen", "op": "gte", "value": 50_000}]}, True),
        ({"attributes": [{"name": "service_type", "op": "in", "value": ["repair"]}]}, False),
        ({"valid_to": "2020-01-01T00:00:00+00:00"}, False),
    ],
)
def test_conditions(conditions, matches, app_ctx):
    from app.points.rules import matches as rule_matches

    facts = Facts(
        event_type="service.completed",
        occurred_at=utcnow(),
        region="north",
        tier="silver",
        attributes={"model_code": "MAGOTAN", "parts_fen": 60_000, "service_type": "maintenance"},
    )
    assert rule_matches(conditions, facts) is matches
