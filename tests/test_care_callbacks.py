"""The customer-service callback tasks care opens: listed (audited), claimed by one agent, closed."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.care import lifecycle
from app.care.models import CallbackTask
from app.core.audit import AuditEntry
from app.core.db import db
from tests import factories
from tests.conftest import run_concurrently

NOW = dt.datetime(2026, 12, 2, 18, tzinfo=dt.UTC)


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def idle_member():
    member = factories.member(enrolled_at=NOW - dt.timedelta(days=200))
    member.activated_at = member.enrolled_at
    db.session.flush()
    return member


@pytest.fixture
def task(app_ctx):
    member = idle_member()
    lifecycle.judge(NOW)
    return member, db.session.scalar(sa.select(CallbackTask))


def test_agents_list_open_tasks_and_the_read_is_audited(client, task):
    member, row = task
    agent, token = factories.operator("agent")
    response = client.get("/api/v1/cs/callback-tasks", headers=auth(token))
    assert response.status_code == 200
    (item,) = response.json["items"]
    assert (item["id"], item["member_no"], item["reason"], item["status"]) == (
        row.id,
        member.member_no,
        "churn_risk",
        "open",
    )
    audited = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "callback_tasks.listed"))
    assert audited.actor_id == agent.actor and audited.details == {"members": [member.id]}


def test_a_task_is_claimed_once_and_closed_by_its_agent_with_a_note(client, task):
    _member, row = task
    (first, first_token), (_second, second_token) = factories.operator("agent"), factories.operator("agent")
    assert (
        client.post(f"/api/v1/cs/callback-tasks/{row.id}/claim", headers=auth(first_token)).json["status"] == "claimed"
    )
    taken = client.post(f"/api/v1/cs/callback-tasks/{row.id}/claim", headers=auth(second_token))
    assert taken.status_code == 409
    refused = client.post(f"/api/v1/cs/callback-tasks/{row.id}/close", json={"note": "x"}, headers=auth(second_token))
    assert refused.status_code == 403
    closed = client.post(
        f"/api/v1/cs/callback-tasks/{row.id}/close", json={"note": "回访完成，已预约保养"}, headers=auth(first_token)
    )
    assert (closed.status_code, closed.json["status"], closed.json["claimed_by"]) == (200, "closed", first.id)
    assert client.get("/api/v1/cs/callback-tasks", headers=auth(first_token)).json["items"] == []


def test_bad_input_gets_field_errors_and_unknown_tasks_404(client, task):
    _member, row = task
    _agent, token = factories.operator("agent")
    assert client.get("/api/v1/cs/callback-tasks?status=lost", headers=auth(token)).status_code == 422
    client.post(f"/api/v1/cs/callback-tasks/{row.id}/claim", headers=auth(token))
    empty = client.post(f"/api/v1/cs/callback-tasks/{row.id}/close", json={"note": ""}, headers=auth(token))
    assert empty.status_code == 422 and "note" in str(empty.json)
    assert client.post("/api/v1/cs/callback-tasks/999999/claim", headers=auth(token)).status_code == 404


def test_dealer_managers_cannot_work_the_call_center_queue(client, task):
    dealer = factories.dealer()
    _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
    assert client.get("/api/v1/cs/callback-tasks", headers=auth(token)).status_code == 403


@pytest.mark.postgres
@pytest.mark.committed
def test_two_agents_claiming_at_once_one_wins(app, client):
    with app.app_context():
        idle_member()
        lifecycle.judge(NOW)
        task_id = db.session.scalar(sa.select(CallbackTask.id))
        tokens = [factories.operator("agent")[1] for _ in range(4)]
        db.session.commit()

    def claim(i: int) -> int:
        with app.test_client() as own_client:
            return own_client.post(f"/api/v1/cs/callback-tasks/{task_id}/claim", headers=auth(tokens[i])).status_code

    assert sorted(run_concurrently(4, claim)) == [200, 409, 409, 409]
