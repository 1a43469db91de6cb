"""Back-office reads of members: audited even when refused or missed, answered alike (no probing),
phones only in bodies, and the order enrollment QR handed over with a required reason."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.core.audit import AuditEntry
from app.core.db import db
from app.core.security import sha256_hex
from app.members import services
from app.members.identifiers import new_member_number
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
    return factories.member(status="active", enrolling_dealer_id=dealer.id, phone="13800000077")


def _reads(action="member.read"):
    return list(db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def _body(response):
    return {k: v for k, v in response.json.items() if k != "request_id"}


def test_a_read_refused_for_another_dealer_is_audited_and_answered_like_a_miss(client, member):
    other = factories.dealer(code="D0999")
    manager, token = factories.operator("dealer_manager", dealer_id=other.id)
    refused = client.get(f"/api/v1/cs/members/{member.member_no}/points?reason=probe", headers=auth(token))
    unknown = new_member_number()
    missed = client.get(f"/api/v1/cs/members/{unknown}/points?reason=probe", headers=auth(token))
    assert refused.status_code == missed.status_code == 404
    assert _body(refused) == _body(missed)
    rows = _reads()
    assert [(r.actor_id, r.subject_id, r.reason) for r in rows] == [
        (manager.actor, str(member.id), "probe"),
        (manager.actor, "-", "probe"),
    ]
    assert rows[0].details == {"refused": True} and rows[1].details == {"miss": True, "member_no": unknown}


def test_a_read_that_fails_later_in_the_request_keeps_its_audit_row(client, member):
    _agent, token = factories.operator("agent")
    refused = client.post(
        f"/api/v1/cs/members/{member.member_no}/adjustments",
        json={"points": 10, "reason_code": "no-such-code", "note": "x", "request_id": "r-1"},
        headers=auth(token),
    )
    assert refused.status_code == 422
    assert [r.subject_id for r in _reads()] == [str(member.id)]


def test_phone_numbers_are_refused_in_paths(client, member):
    _agent, token = factories.operator("agent")
    response = client.get("/api/v1/cs/members/13800000077/points", headers=auth(token))
    assert response.status_code == 404
    assert all("13800000077" not in str(r.details) for r in _reads())


def test_members_are_searched_by_phone_in_the_body(client, member):
    _agent, token = factories.operator("agent")
    found = client.post(
        "/api/v1/cs/members/search", json={"phone": "138 0000 0077", "reason": "来电"}, headers=auth(token)
    )
    assert found.status_code == 200
    assert found.json["member_no"] == member.member_no and found.json["phone"] == "138****0077"
    missed = client.post(
        "/api/v1/cs/members/search", json={"phone": "13900000000", "reason": "来电"}, headers=auth(token)
    )
    assert missed.status_code == 404
    other = factories.dealer(code="D0999")
    _manager, manager_token = factories.operator("dealer_manager", dealer_id=other.id)
    refused = client.post(
        "/api/v1/cs/members/search", json={"phone": "13800000077", "reason": "来电"}, headers=auth(manager_token)
    )
    assert refused.status_code == 404 and _body(refused) == _body(missed)
    assert (
        client.post("/api/v1/cs/members/search", json={"phone": "13800000077"}, headers=auth(token)).status_code == 422
    )
    rows = _reads()
    assert [(r.subject_id, r.reason) for r in rows] == [
        (str(member.id), "来电"),
        ("-", "来电"),
        (str(member.id), "来电"),
    ]
    assert all("13900000000" not in str(r.details) for r in rows)


def test_the_order_qr_is_handed_over_with_a_required_reason_and_audited(client, dealer, post_dms):
    _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
    post_dms(dms_events.delivered("13800000031", factories.vin()))
    buyer = services.find_by_phone("13800000031")
    url = f"/api/v1/cs/members/{buyer.member_no}/enrollment-qr"
    assert client.post(url, json={}, headers=auth(token)).status_code == 422
    assert client.get(url, headers=auth(token)).status_code == 405
    data = client.post(url, json={"reason": "交车仪式"}, headers=auth(token)).json
    token_row = services.open_enrollment_token(buyer)
    assert sha256_hex(data["scene"].removeprefix("order:")) == token_row.token_hash
    (issued,) = _reads("enrollment_token.issued")
    assert (issued.subject_id, issued.reason, issued.details) == (
        str(buyer.id),
        "交车仪式",
        {"token_id": token_row.id, "dealer_id": token_row.dealer_id},
    )
    other = factories.dealer(code="D0999")
    _stranger, stranger_token = factories.operator("dealer_manager", dealer_id=other.id)
    refused = client.post(url, json={"reason": "probe"}, headers=auth(stranger_token))
    unknown = new_member_number()
    missed = client.post(
        f"/api/v1/cs/members/{unknown}/enrollment-qr", json={"reason": "probe"}, headers=auth(stranger_token)
    )
    assert refused.status_code == missed.status_code == 404 and _body(refused) == _body(missed)
    assert [r.details for r in _reads("enrollment_token.refused")] == [
        {"refused": True},
        {"miss": True, "member_no": unknown},
    ]
