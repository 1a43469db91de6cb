"""Console actions happen once however many people click at the same moment (PostgreSQL, real
commits, one test client and session per thread)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.care import callbacks
from app.care.models import CallbackTask
from app.core.db import db
from app.core.models import AuditEntry
from app.members.models import Member, MemberMerge
from app.points import ledger, queries
from app.points.models import AdjustmentRequest, PointEntry
from tests import factories
from tests.conftest import run_concurrently
from tests.console_helpers import csrf_token, sign_in

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def _signed_in_clients(app, usernames, page):
    """A client per person, signed in, with the CSRF token of a page it just opened."""
    clients = []
    for username in usernames:
        client = app.test_client()
        sign_in(client, username)
        clients.append((client, csrf_token(client, page)))
    return clients


def _count(app, query):
    with app.app_context():
        return db.session.scalar(query)


def test_two_supervisors_approving_one_adjustment_at_once_apply_it_once(app):
    with app.app_context():
        member = factories.member()
        factories.operator("agent", username="agent-c")
        for n in range(4):
            factories.operator("supervisor", username=f"boss-{n}")
        db.session.commit()
        member_no, member_id = member.member_no, member.id
    requester = _signed_in_clients(app, ["agent-c"], f"/console/members/{member_no}")[0]
    requested = requester[0].post(
        f"/console/members/{member_no}/adjustments",
        data={
            "points": "5000",
            "reason_code": "goodwill",
            "note": "big",
            "request_id": "big-1",
            "csrf_token": requester[1],
        },
    )
    assert requested.status_code == 302
    adjustment_id = _count(app, sa.select(AdjustmentRequest.id))
    bosses = _signed_in_clients(app, [f"boss-{n}" for n in range(4)], "/console/approvals")

    def approve(i):
        client, token = bosses[i]
        return client.post(
            f"/console/approvals/{adjustment_id}", data={"decision": "approve", "csrf_token": token}
        ).status_code

    statuses = run_concurrently(4, approve)
    assert sorted(statuses) == [302, 409, 409, 409]
    assert _count(app, sa.select(sa.func.count()).select_from(PointEntry).where(PointEntry.member_id == member_id)) == 1
    approvals = sa.select(sa.func.count()).where(AuditEntry.action == "points.adjustment_approved")
    assert _count(app, approvals) == 1


def test_agents_freezing_one_member_at_once_freeze_once(app):
    with app.app_context():
        member = factories.member()
        for n in range(5):
            factories.operator("agent", username=f"agent-{n}")
        db.session.commit()
        member_no, member_id = member.member_no, member.id
    page = f"/console/members/{member_no}"
    agents = _signed_in_clients(app, [f"agent-{n}" for n in range(5)], page)

    def freeze(i):
        client, token = agents[i]
        return client.post(f"{page}/freeze", data={"reason": f"report {i}", "csrf_token": token}).status_code

    statuses = run_concurrently(5, freeze)
    assert sorted(statuses) == [302, 409, 409, 409, 409]
    assert _count(app, sa.select(Member.status).where(Member.id == member_id)) == "frozen"
    assert _count(app, sa.select(sa.func.count()).where(AuditEntry.action == "member.frozen")) == 1


def test_agents_claiming_one_callback_task_at_once_leave_it_to_exactly_one(app):
    with app.app_context():
        member = factories.member()
        callbacks.open_task(member.id, "churn_risk", "2026-11-01")
        agents = [factories.operator("agent", username=f"caller-{n}")[0] for n in range(4)]
        db.session.commit()
        task_id = db.session.scalar(sa.select(CallbackTask.id))
        ids = {agent.id for agent in agents}
    clients = _signed_in_clients(app, [f"caller-{n}" for n in range(4)], "/console/callbacks")

    def claim(i):
        client, token = clients[i]
        return client.post(f"/console/callbacks/{task_id}/claim", data={"csrf_token": token}).status_code

    statuses = run_concurrently(4, claim)
    assert sorted(statuses) == [302, 409, 409, 409]
    holder = _count(app, sa.select(CallbackTask.claimed_by).where(CallbackTask.id == task_id))
    assert holder in ids
    claims = sa.select(sa.func.count()).where(AuditEntry.action == "callback_task.claimed")
    assert _count(app, claims) == 1


def test_supervisors_approving_one_merge_at_once_apply_it_once(app):
    with app.app_context():
        survivor, duplicate = factories.member(), factories.member()
        ledger.earn(
            ledger.Earning(
                member_id=duplicate.id, currency="reward", points=900, idempotency_key="dup-900", source_type="test"
            )
        )
        factories.operator("agent", username="filer")
        for n in range(4):
            factories.operator("supervisor", username=f"merger-{n}")
        db.session.commit()
        survivor_no, survivor_id, duplicate_no = survivor.member_no, survivor.id, duplicate.member_no
    filer = _signed_in_clients(app, ["filer"], f"/console/members/{survivor_no}?tab=merges")[0]
    filed = filer[0].post(
        f"/console/members/{survivor_no}/merge-requests",
        data={"other_member_no": duplicate_no, "keep": "this", "reason": "dup", "csrf_token": filer[1]},
    )
    assert filed.status_code == 302
    merge_id = _count(app, sa.select(MemberMerge.id))
    bosses = _signed_in_clients(app, [f"merger-{n}" for n in range(4)], "/console/merges")

    def approve(i):
        client, token = bosses[i]
        return client.post(f"/console/merges/{merge_id}/approve", data={"csrf_token": token}).status_code

    statuses = run_concurrently(4, approve)
    assert sorted(statuses) == [302, 409, 409, 409]
    assert _count(app, sa.select(MemberMerge.status).where(MemberMerge.id == merge_id)) == "applied"
    assert _count(app, sa.select(sa.func.count()).where(AuditEntry.action == "member.merged")) == 1
    with app.app_context():
        assert queries.balance(survivor_id).available == 900  # moved once
