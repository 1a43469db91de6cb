"""Vehicle claims: answers that never reveal other members' claims, limits per member, per day and
per car, and a back-office queue scoped by dealer. (Races: tests/test_miniapp_concurrency.py.)"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app.core import tunables
from app.core.db import db
from app.members import services
from app.members.models import Member, VehicleClaim
from app.wechat import clients
from tests import factories
from tests.miniapp_helpers import FakeMiniappWeChat, MiniClient


def auth(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def wechat(fakes, app, http_mock):
    clients.forget_clients(app)
    return FakeMiniappWeChat(fakes.mini_app)


@pytest.fixture
def new_mini(client, wechat, app_ctx):
    """Signs in and registers mini-app users, one per call."""
    made = iter(range(100))

    def make() -> MiniClient:
        n = next(made)
        mini = MiniClient(client, wechat)
        mini.sign_in(f"o-claimant-{n}")
        assert mini.register(f"139222200{n:02d}").status_code == 201
        return mini

    return make


def claim(mini, vin, **extra):
    return mini.post("/api/v1/me/vehicles", json={"vin": vin, **extra})


def _shape(response):
    """What a member can compare between two answers: status, outcome and the claim as shown."""
    body = response.json
    claim_body = {k: v for k, v in body["claim"].items() if k not in ("id", "created_at", "vin")}
    return response.status_code, json.dumps([body["outcome"], body["vehicle"], claim_body], sort_keys=True)


def test_a_claim_on_a_car_someone_else_claimed_is_answered_like_any_other(new_mini):
    first, second, control = new_mini(), new_mini(), new_mini()
    contested = factories.vin()
    assert claim(first, contested).status_code == 202
    answer = claim(second, contested)
    assert _shape(answer) == _shape(claim(control, factories.vin()))
    assert claim(second, contested).json["claim"]["id"] == answer.json["claim"]["id"]  # again: the same claim
    listed = second.get("/api/v1/me/vehicles").json["claims"]
    assert [c["id"] for c in listed] == [answer.json["claim"]["id"]]  # only their own claim, nothing of others


def test_a_claim_on_a_car_another_member_owns_is_answered_like_any_other(new_mini):
    owner = factories.member()
    car = factories.vehicle(owner=owner)
    claimant, control = new_mini(), new_mini()
    assert _shape(claim(claimant, car.vin)) == _shape(claim(control, factories.vin()))


def test_over_the_cap_of_claimants_a_claim_is_escalated_to_hq_and_answered_alike(new_mini, client):
    dealer = factories.dealer()
    car = factories.vehicle(selling_dealer_id=dealer.id)
    answers = [claim(new_mini(), car.vin) for _ in range(4)]
    assert len({_shape(a) for a in answers}) == 1
    rows = db.session.scalars(sa.select(VehicleClaim).order_by(VehicleClaim.id)).all()
    assert [(r.dealer_id, r.escalated) for r in rows] == [(dealer.id, False)] * 3 + [(None, True)]

    _manager, manager_token = factories.operator("dealer_manager", dealer_id=dealer.id)
    queue = client.get("/api/v1/cs/vehicle-claims", headers=auth(manager_token)).json
    assert [c["id"] for c in queue] == [r.id for r in rows[:3]]
    assert {c["competing_claims"] for c in queue} == {3}
    escalated_url = f"/api/v1/cs/vehicle-claims/{rows[3].id}/reject"
    assert client.post(escalated_url, json={}, headers=auth(manager_token)).status_code == 404
    _agent, agent_token = factories.operator("agent")
    hq_queue = client.get("/api/v1/cs/vehicle-claims", headers=auth(agent_token)).json
    assert [(c["id"], c["escalated"]) for c in hq_queue][-1] == (rows[3].id, True)
    assert client.post(escalated_url, json={"note": "重复申领"}, headers=auth(agent_token)).status_code == 200


def test_the_cap_of_claimants_is_a_program_setting(new_mini):
    tunables.set_value("vehicles.max_pending_claimants_per_vin", 1, actor=("test", "t"))
    db.session.flush()  # visible to the requests' sessions
    vin = factories.vin()
    claim(new_mini(), vin)
    claim(new_mini(), vin)
    escalated = db.session.scalars(sa.select(VehicleClaim.escalated).order_by(VehicleClaim.id)).all()
    assert escalated == [False, True]


def test_claims_per_member_per_day_are_limited(new_mini, client):
    tunables.set_value("vehicles.max_claims_per_member_per_day", 2, actor=("test", "t"))
    db.session.flush()  # visible to the requests' sessions
    mini = new_mini()
    first = claim(mini, factories.vin())
    assert claim(mini, factories.vin()).status_code == 202
    _agent, token = factories.operator("agent")
    assert client.post(f"/api/v1/cs/vehicle-claims/{first.json['claim']['id']}/reject", json={}, headers=auth(token))
    refused = claim(mini, factories.vin())  # rejected claims count too: the limit is on claiming
    assert refused.status_code == 429 and refused.json["error"]["message"] == "您今天添加的车辆较多，请明天再试。"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(VehicleClaim)) == 2


def test_an_unknown_dealer_code_is_a_field_error(new_mini):
    mini = new_mini()
    response = claim(mini, factories.vin(), dealer_code="NOPE")
    assert response.status_code == 422
    assert response.json["error"]["fields"] == {"dealer_code": ["没有使用该代码的经销商。"]}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(VehicleClaim)) == 0


def test_the_back_office_queue_is_scoped_by_dealer(new_mini, client, post_dms):
    seller, chosen, servicer, stranger = (factories.dealer(code=f"D05{i}") for i in range(4))
    sold_car = factories.vehicle(selling_dealer_id=seller.id)
    serviced_car = factories.vehicle(owner=factories.member())
    services.record_servicing(serviced_car, servicer.id, serviced_car.purchase_date)
    mini = new_mini()
    ids = {
        "sold": claim(mini, sold_car.vin).json["claim"]["id"],
        "chosen": claim(mini, factories.vin(), dealer_code=chosen.code).json["claim"]["id"],
        "serviced": claim(mini, serviced_car.vin).json["claim"]["id"],
    }

    def queue(dealer=None, role="dealer_manager"):
        _op, token = factories.operator(role, dealer_id=dealer.id if dealer else None)
        return {c["id"] for c in client.get("/api/v1/cs/vehicle-claims", headers=auth(token)).json}

    assert queue(seller) == {ids["sold"]}
    assert queue(chosen) == {ids["chosen"]}
    assert queue(servicer) == {ids["serviced"]}
    assert queue(stranger) == set()
    assert queue(role="supervisor") == set(ids.values())
    assert queue(role="operator") == set(ids.values())


def test_a_dealer_cannot_decide_a_claim_outside_its_queue(new_mini, client):
    routed, stranger = factories.dealer(), factories.dealer()
    claim_id = claim(new_mini(), factories.vin(), dealer_code=routed.code).json["claim"]["id"]
    url = f"/api/v1/cs/vehicle-claims/{claim_id}/reject"
    _s, stranger_token = factories.operator("dealer_manager", dealer_id=stranger.id)
    refused = client.post(url, json={}, headers=auth(stranger_token))
    missing = client.post("/api/v1/cs/vehicle-claims/999999/reject", json={}, headers=auth(stranger_token))
    assert refused.status_code == missing.status_code == 404
    assert refused.json["error"]["message"] == missing.json["error"]["message"]
    _r, routed_token = factories.operator("dealer_manager", dealer_id=routed.id)
    assert client.post(url, json={}, headers=auth(routed_token)).json["status"] == "rejected"


def test_a_claim_is_routed_to_the_enrolling_dealer_when_nothing_else_names_one(new_mini):
    mini = new_mini()
    first = db.session.get(VehicleClaim, claim(mini, factories.vin()).json["claim"]["id"])
    assert first.dealer_id is None  # no dealer anywhere: customer service at HQ
    dealer = factories.dealer()
    member = db.session.get(Member, first.member_id)
    member.enrolling_dealer_id = dealer.id
    db.session.flush()
    second = db.session.get(VehicleClaim, claim(mini, factories.vin()).json["claim"]["id"])
    assert second.dealer_id == dealer.id
