"""Exactly-once points under concurrency, on PostgreSQL with real commits and many threads."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app.core.db import db
from app.core.security import sign_timestamped
from app.points import ledger, rulesets, simulation
from app.points.models import PointAccount, PointEntry, PointLot, RuleSet
from app.points.rules import rule_to_json
from tests import dms_events, factories
from tests.conftest import DMS_SECRET, run_concurrently

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def _scalar(app, query):
    with app.app_context():
        return db.session.scalar(query)


def _post(app, document):
    body = json.dumps(document).encode()
    headers = {"Content-Type": "application/json", **sign_timestamped(DMS_SECRET, body)}
    return app.test_client().post("/api/v1/dms/events", data=body, headers=headers).status_code


@pytest.fixture
def rich_member(app):
    with app.app_context():
        dealer = factories.dealer(code="D0101")
        _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
        member = factories.member(status="active", enrolling_dealer_id=dealer.id)
        factories.vehicle(owner=member, selling_dealer_id=dealer.id)  # the dealer's customer
        ledger.earn(
            ledger.Earning(
                member_id=member.id,
                currency="reward",
                points=1_000,
                idempotency_key="seed",
                source_type="test",
            )
        )
        db.session.commit()
        return member.id, member.member_no, token


def test_200_concurrent_spends_of_10_on_1000_points_exactly_100_succeed(app, rich_member):
    member_id, member_no, token = rich_member

    def spend(i):
        response = app.test_client().post(
            f"/api/v1/cs/members/{member_no}/deductions",
            json={"points": 10, "request_id": f"r-{i}", "purpose": "保养抵扣"},
            headers={"Authorization": f"Bearer {token}"},
        )
        return response.status_code, (response.json or {}).get("error", {}).get("code")

    results = run_concurrently(200, spend)
    assert sorted(set(results)) == [(201, None), (409, "insufficient_points")]
    assert results.count((201, None)) == 100
    with app.app_context():
        account = db.session.get(PointAccount, member_id)
        assert (account.reward_available, account.lifetime_spent) == (0, 1_000)
        entries = db.session.scalars(sa.select(PointEntry.points).where(PointEntry.member_id == member_id)).all()
        assert sum(entries) == account.reward_available
        assert db.session.scalar(sa.select(sa.func.sum(PointLot.remaining)).where(PointLot.member_id == member_id)) == 0


def test_a_double_tapped_deduction_spends_once(app, rich_member):
    member_id, member_no, token = rich_member

    def tap(_i):
        return (
            app.test_client()
            .post(
                f"/api/v1/cs/members/{member_no}/deductions",
                json={"points": 300, "request_id": "same-tap", "purpose": "配件"},
                headers={"Authorization": f"Bearer {token}"},
            )
            .json["duplicate"]
        )

    assert sorted(run_concurrently(10, tap)) == [False] + [True] * 9
    assert _scalar(app, sa.select(PointAccount.reward_available).where(PointAccount.member_id == member_id)) == 700


@pytest.fixture
def serviced_car(app):
    with app.app_context():
        dealer = factories.dealer(code="D0101")
        factories.staff(dealer, code="SA0101")
        member = factories.member(status="active")
        car = factories.vehicle(owner=member)
        db.session.commit()
        return member.id, car.vin


def test_the_same_service_event_delivered_50_times_at_once_awards_once(app, serviced_car):
    member_id, vin = serviced_car
    document = dms_events.service(vin, parts_fen=100_000, labour_fen=50_000, event_id="storm-1")
    statuses = run_concurrently(50, lambda _i: _post(app, document))
    assert sorted(statuses) == [200] * 49 + [202]
    account = _scalar(app, sa.select(PointAccount).where(PointAccount.member_id == member_id))
    assert (account.reward_pending, account.tier_points) == (100, 750)


def test_a_repair_order_resent_under_50_new_event_ids_at_once_awards_once(app, serviced_car):
    member_id, vin = serviced_car
    documents = [
        dms_events.service(vin, parts_fen=100_000, labour_fen=50_000, repair_order_no="RO-STORM", event_id=f"e{i}")
        for i in range(50)
    ]
    statuses = run_concurrently(50, lambda i: _post(app, documents[i]))
    assert statuses == [202] * 50
    account = _scalar(app, sa.select(PointAccount).where(PointAccount.member_id == member_id))
    assert (account.reward_pending, account.tier_points) == (100, 750)
    earned = _scalar(app, sa.select(sa.func.count()).where(PointEntry.source_ref == "RO-STORM"))
    assert earned == 2  # one reward, one tier entry


@pytest.fixture
def campaign(app):
    with app.app_context():
        before = db.session.scalar(sa.select(sa.func.max(RuleSet.id)))
        draft = rulesets.draft_from_published("concurrency campaign", actor="test")
        bonus = {
            "code": "burst_campaign",
            "name": "burst",
            "event_type": "service.completed",
            "currency": "reward",
            "formula": {"type": "fixed", "points": 30},
            "budget_points": 200,
        }
        rulesets.replace_rules(draft, [rule_to_json(r) for r in draft.rules] + [bonus], actor="test")
        rulesets.record_simulation(draft, simulation.simulate(draft, days=1), actor="test")
        rulesets.publish(draft, actor="test")
        db.session.commit()
    yield
    with app.app_context():  # put the migrations' default rule set back in force
        db.session.execute(sa.delete(RuleSet).where(RuleSet.id > before))
        db.session.execute(sa.update(RuleSet).where(RuleSet.id <= before).values(effective_to=None, status="published"))
        db.session.commit()


def test_a_campaign_budget_holds_under_concurrent_earnings(app, campaign):
    with app.app_context():
        dealer = factories.dealer(code="D0101")
        factories.staff(dealer, code="SA0101")
        vins = [factories.vehicle(owner=factories.member(status="active")).vin for _ in range(20)]
        db.session.commit()
    statuses = run_concurrently(20, lambda i: _post(app, dms_events.service(vins[i], parts_fen=10_000, labour_fen=0)))
    assert statuses == [202] * 20
    issued = _scalar(app, sa.select(sa.func.sum(PointEntry.points)).where(PointEntry.rule_code == "burst_campaign"))
    assert issued == 200  # 6 × 30 + one last grant of 20; never more


def test_refunds_racing_their_service_visits_always_end_deducted(app, serviced_car):
    """Refund and visit of one repair order processed at the same moment, 10 times: whichever
    commits first, the refunded half of the points is taken back."""
    member_id, vin = serviced_car
    for i in range(10):
        visit = dms_events.service(vin, parts_fen=100_000, labour_fen=0, repair_order_no=f"RO-RACE-{i}")
        refund = dms_events.refund(f"RO-RACE-{i}", vin, parts_fen=50_000, labour_fen=0, refund_no=f"RF-RACE-{i}")
        assert sorted(run_concurrently(2, lambda k, pair=(visit, refund): _post(app, pair[k]))) == [202, 202]
    account = _scalar(app, sa.select(PointAccount).where(PointAccount.member_id == member_id))
    assert account.reward_pending == 10 * 50  # each visit earns 100 pending; each refund takes half back
