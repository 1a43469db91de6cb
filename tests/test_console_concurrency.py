"""Console actions happen once however many people click at the same moment (PostgreSQL, real
commits, one test client and session per thread)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.core.db import db
from app.core.models import AuditEntry
from app.members.models import Member
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
