"""The CRM sync state in the back office and on the CLI; the outbox commands."""

from __future__ import annotations

import json

import sqlalchemy as sa

from app import gateways
from app.core.db import db
from app.core.models import AuditEntry
from app.crm import delivery
from app.crm.models import CrmOutboxEntry
from tests import factories
from tests.crm_helpers import crm_fixture  # noqa: F401 - the crm fixture


def test_the_sync_state_endpoint_is_an_audited_read(app_ctx, client, crm):
    member = factories.member()
    db.session.commit()
    _agent, token = factories.operator("agent")
    crm.fail_next("deliver", gateways.Refused("no", code=400))
    delivery.deliver_until_idle()
    response = client.get(
        f"/api/v1/cs/members/{member.member_no}/crm-sync?reason=caller",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    assert response.json == {"last_delivered_at": None, "pending": 1, "dead": 1}
    reads = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "member.read", AuditEntry.subject_id == str(member.id))
    ).all()
    assert [r.reason for r in reads] == ["caller"]
    assert (
        client.get("/api/v1/cs/members/9000000000/crm-sync", headers={"Authorization": f"Bearer {token}"}).status_code
        == 404
    )


def test_members_show_carries_the_crm_sync_state(app, app_ctx, crm):
    member = factories.member()
    db.session.commit()
    delivery.deliver_until_idle()
    result = app.test_cli_runner().invoke(args=["members", "show", member.member_no, "--reason", "check"])
    assert result.exit_code == 0, result.output
    card = json.loads(result.output)
    assert card["crm_sync"]["pending"] == 0 and card["crm_sync"]["dead"] == 0
    assert card["crm_sync"]["last_delivered_at"] is not None


def test_outbox_commands_list_retry_and_skip(app, app_ctx, crm):
    member = factories.member()
    db.session.commit()
    crm.down = True
    runner = app.test_cli_runner()
    for _ in range(12):
        db.session.execute(
            sa.update(CrmOutboxEntry).values(next_attempt_at=sa.func.now() - sa.text("interval '1 hour'"))
        )
        delivery.deliver_until_idle()
    dead = db.session.scalar(sa.select(CrmOutboxEntry).where(CrmOutboxEntry.status == "dead"))
    assert dead is not None and dead.member_id == member.id
    listed = runner.invoke(args=["crm", "outbox", "--status", "dead"])
    assert f"member={member.id} seq=1" in listed.output and "Unavailable" in listed.output
    crm.down = False
    assert runner.invoke(args=["crm", "skip", str(dead.id)]).exit_code == 2  # --reason is required
    result = runner.invoke(args=["crm", "retry", str(dead.id)])
    assert result.exit_code == 0, result.output
    assert runner.invoke(args=["crm", "deliver"]).exit_code == 0
    assert crm.accepted[member.member_no] == [1, 2]
