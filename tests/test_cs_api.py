"""Back-office API: sign-in, audited reads, adjustments with approval, deductions, settlement."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.core.audit import AuditEntry
from app.core.clock import utcnow
from app.core.db import db
from app.points import ledger
from app.points.models import PointAccount
from tests import dms_events, factories


def auth(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def dealer(app_ctx):
    row = factories.dealer(code="D0101")
    factories.staff(row, code="SA0101")
    return row


@pytest.fixture
def member(dealer):
    row = factories.member(status="active", enrolling_dealer_id=dealer.id)
    ledger.earn(
        ledger.Earning(member_id=row.id, currency="reward", points=5_000, idempotency_key="seed", source_type="test")
    )
    db.session.flush()
    return row


def test_sign_in_returns_a_token_and_wrong_passwords_are_refused(client, app_ctx):
    factories.operator("agent", username="li.agent")
    ok = client.post("/api/v1/cs/sessions", json={"username": "li.agent", "password": "correct horse"})
    assert ok.status_code == 201
    assert ok.json["role"] == "agent" and ok.json["token"]
    for username, password in (("li.agent", "wrong"), ("nobody", "correct horse")):
        refused = client.post("/api/v1/cs/sessions", json={"username": username, "password": password})
        assert refused.status_code == 401
        assert refused.json["error"]["message"] == "用户名或密码错误。"


def test_member_points_need_a_valid_token_and_the_read_is_audited(client, member):
    _agent, token = factories.operator("agent")
    url = f"/api/v1/cs/members/{member.member_no}/points"
    assert client.get(url).status_code == 401
    assert client.get(url, headers=auth("forged.token")).status_code == 401
    response = client.get(url + "?reason=来电咨询积分", headers=auth(token))
    assert response.status_code == 200
    assert response.json["balance"]["available"] == 5_000
    assert response.json["tier"]["tier"] == "silver"
    entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "member.read"))
    assert (entry.subject_id, entry.reason) == (str(member.id), "来电咨询积分")


def test_history_is_paged_with_lots(client, member):
    _agent, token = factories.operator("agent")
    ledger.spend(member.id, 100, idempotency_key="h1", source_type="test")
    page = client.get(f"/api/v1/cs/members/{member.member_no}/points/history?per_page=1", headers=auth(token)).json
    assert (page["total"], len(page["items"]), page["items"][0]["kind"]) == (2, 1, "spend")
    second = client.get(
        f"/api/v1/cs/members/{member.member_no}/points/history?page=2&per_page=1", headers=auth(token)
    ).json
    assert second["items"][0]["lot"]["remaining"] == 4_900
    bad = client.get(f"/api/v1/cs/members/{member.member_no}/points/history?per_page=1000", headers=auth(token))
    assert bad.status_code == 422 and "per_page" in bad.json["error"]["fields"]


def test_a_dealer_manager_sees_only_their_dealers_members(client, member):
    other = factories.dealer(code="D0999")
    _manager, token = factories.operator("dealer_manager", dealer_id=other.id)
    response = client.get(f"/api/v1/cs/members/{member.member_no}/points", headers=auth(token))
    assert response.status_code == 404  # like no member at all: no probing who is a member


def test_small_adjustments_apply_at_once_and_large_ones_wait_for_another_supervisor(client, member):
    _agent, agent_token = factories.operator("agent")
    _supervisor, supervisor_token = factories.operator("supervisor")
    url = f"/api/v1/cs/members/{member.member_no}/adjustments"
    small = client.post(
        url,
        json={"points": 300, "reason_code": "goodwill", "note": "投诉补偿", "request_id": "a1"},
        headers=auth(agent_token),
    )
    assert (small.status_code, small.json["status"]) == (201, "applied")
    big = client.post(
        url,
        json={"points": -1_500, "reason_code": "duplicate_award", "note": "重复积分", "request_id": "a2"},
        headers=auth(agent_token),
    )
    assert (big.status_code, big.json["status"]) == (202, "pending")
    assert db.session.get(PointAccount, member.id).reward_available == 5_300
    # Agents cannot approve; nobody approves their own request.
    approve = f"/api/v1/cs/adjustments/{big.json['id']}/approve"
    assert client.post(approve, headers=auth(agent_token)).status_code == 403
    own = client.post(
        url,
        json={"points": 2_000, "reason_code": "goodwill", "note": "x", "request_id": "a3"},
        headers=auth(supervisor_token),
    )
    assert (
        client.post(f"/api/v1/cs/adjustments/{own.json['id']}/approve", headers=auth(supervisor_token)).status_code
        == 403
    )
    pending = client.get("/api/v1/cs/adjustments/pending", headers=auth(supervisor_token)).json
    assert {p["request_id"] if "request_id" in p else p["id"] for p in pending} == {
        big.json["id"],
        own.json["id"],
    }
    approved = client.post(approve, headers=auth(supervisor_token))
    assert (approved.status_code, approved.json["status"]) == (200, "applied")
    db.session.expire_all()
    assert db.session.get(PointAccount, member.id).reward_available == 3_800
    assert client.post(approve, headers=auth(supervisor_token)).status_code == 409
    actions = db.session.scalars(sa.select(AuditEntry.action).where(AuditEntry.action.like("points.%"))).all()
    assert actions.count("points.adjustment_requested") == 3 and "points.adjustment_approved" in actions


def test_a_large_adjustment_split_into_small_ones_still_needs_a_second_person(client, member):
    _agent, token = factories.operator("agent")
    url = f"/api/v1/cs/members/{member.member_no}/adjustments"

    def adjust(points: int, request_id: str) -> str:
        body = {"points": points, "reason_code": "goodwill", "note": "补偿", "request_id": request_id}
        return client.post(url, json=body, headers=auth(token)).json["status"]

    assert [adjust(600, "s1"), adjust(400, "s2"), adjust(600, "s3"), adjust(-100, "s4")] == [
        "applied",
        "applied",
        "pending",  # 1,600 in 24 hours: above the threshold
        "pending",
    ]


def test_adjustments_need_a_known_reason_code_and_a_resubmit_is_not_doubled(client, member):
    _agent, token = factories.operator("agent")
    url = f"/api/v1/cs/members/{member.member_no}/adjustments"
    bad = client.post(
        url,
        json={"points": 10, "reason_code": "because", "note": "x", "request_id": "b1"},
        headers=auth(token) | {"Accept-Language": "en"},
    )
    assert bad.status_code == 422 and bad.json["error"]["fields"] == {"reason_code": ["Unknown reason code."]}
    body = {"points": 10, "reason_code": "missing_points", "note": "补录", "request_id": "b2"}
    first, second = (client.post(url, json=body, headers=auth(token)) for _ in range(2))
    assert first.json["id"] == second.json["id"]
    db.session.expire_all()
    assert db.session.get(PointAccount, member.id).reward_available == 5_010


def test_deduction_at_the_dealer(client, member, dealer):
    _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
    factories.vehicle(owner=member, selling_dealer_id=dealer.id)  # the dealer's customer (README "Who sees a member")
    url = f"/api/v1/cs/members/{member.member_no}/deductions"
    ok = client.post(url, json={"points": 1_000, "request_id": "d1", "purpose": "保养工时抵扣"}, headers=auth(token))
    assert (ok.status_code, ok.json["available"], ok.json["duplicate"]) == (201, 4_000, False)
    too_much = client.post(url, json={"points": 9_999, "request_id": "d2", "purpose": "x"}, headers=auth(token))
    assert (too_much.status_code, too_much.json["error"]["code"]) == (409, "insufficient_points")


def test_monthly_settlement_from_funding_and_redemptions(client, member, dealer, post_dms, time_machine):
    _operator, op_token = factories.operator("operator")
    _manager, mgr_token = factories.operator("dealer_manager", dealer_id=dealer.id)
    car = factories.vehicle(owner=member)
    post_dms(dms_events.service(car.vin, parts_fen=500_000, labour_fen=0))  # dealer funds 500 points
    client.post(
        f"/api/v1/cs/members/{member.member_no}/deductions",
        json={"points": 2_000, "request_id": "s1", "purpose": "购车抵扣"},
        headers=auth(mgr_token),
    )
    month = utcnow().astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m")
    generated = client.post(f"/api/v1/program/settlements/{month}", headers=auth(op_token))
    assert generated.status_code == 201
    [statement] = generated.json
    assert (statement["funded_points"], statement["redeemed_points"]) == (500, 2_000)
    assert statement["net_fen"] == (2_000 - 500) * 20  # ¥300 owed to the dealer
    sid = statement["id"]
    early = client.post(f"/api/v1/program/settlements/statements/{sid}/review", headers=auth(op_token))
    assert early.status_code == 409  # the month is still running: nothing may be frozen yet
    year, number = map(int, month.split("-"))
    next_month = dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=dt.UTC)  # 08:00 there in Shanghai
    time_machine.move_to(next_month)
    _operator, op_token = factories.operator("operator")  # fresh sign-ins after the jump
    _supervisor, sup_token = factories.operator("supervisor")
    assert (
        client.post(f"/api/v1/program/settlements/statements/{sid}/approve", headers=auth(sup_token)).status_code == 409
    )
    assert (
        client.post(f"/api/v1/program/settlements/statements/{sid}/review", headers=auth(op_token)).json["status"]
        == "reviewed"
    )
    assert (
        client.post(f"/api/v1/program/settlements/statements/{sid}/approve", headers=auth(sup_token)).json["status"]
        == "approved"
    )
    paid = client.post(
        f"/api/v1/program/settlements/statements/{sid}/pay",
        json={"payment_ref": "BANK-42"},
        headers=auth(op_token),
    )
    assert paid.json["status"] == "paid"
    csv_text = client.get(f"/api/v1/program/settlements/{month}.csv", headers=auth(op_token)).get_data(as_text=True)
    assert "D0101" in csv_text and "300.00" in csv_text and "BANK-42" in csv_text


def test_rule_sets_through_the_api(client, app_ctx):
    _operator, token = factories.operator("operator")
    draft = client.post("/api/v1/program/rule-sets", json={"name": "2027 Q1"}, headers=auth(token))
    assert draft.status_code == 201 and draft.json["status"] == "draft"
    rules = draft.json["rules"]
    rules[0]["formula"]["per_fen"] = 0
    bad = client.put(f"/api/v1/program/rule-sets/{draft.json['id']}/rules", json={"rules": rules}, headers=auth(token))
    assert bad.status_code == 422 and "rules" in bad.json["error"]["fields"]
    rules[0]["formula"]["per_fen"] = 5_000  # double the car purchase reward
    assert (
        client.put(
            f"/api/v1/program/rule-sets/{draft.json['id']}/rules", json={"rules": rules}, headers=auth(token)
        ).status_code
        == 200
    )
    blocked = client.post(f"/api/v1/program/rule-sets/{draft.json['id']}/publish", json={}, headers=auth(token))
    assert blocked.status_code == 409
    simulated = client.post(
        f"/api/v1/program/rule-sets/{draft.json['id']}/simulate", json={"days": 30}, headers=auth(token)
    )
    assert simulated.json["status"] == "simulated" and "difference" in simulated.json["simulation"]
    published = client.post(f"/api/v1/program/rule-sets/{draft.json['id']}/publish", json={}, headers=auth(token))
    assert published.json["status"] == "published"
    _agent, agent_token = factories.operator("agent")
    assert client.post("/api/v1/program/rule-sets", json={"name": "x"}, headers=auth(agent_token)).status_code == 403
