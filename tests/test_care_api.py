"""Care over HTTP: the member's notification preferences (mini-app) and the back office's
notification history (audited, paged), resend (audited) and delivery rates."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.care import notify
from app.care.models import Notification
from app.core.clock import business_today
from app.core.db import db
from app.core.models import AuditEntry
from app.members import services
from app.wechat import clients
from tests import factories
from tests.care_helpers import at_daytime
from tests.miniapp_helpers import FakeMiniappWeChat, MiniClient
from tests.test_care_sending import member_on, planned

URL = "/api/v1/me/notification-preferences"


@pytest.fixture(autouse=True)
def daytime():
    """10:00 in Shanghai (the clock ticking): rows due now are outside quiet hours, whenever the suite runs."""
    with at_daytime():
        yield


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def mini(client, fakes, app, http_mock):
    clients.forget_clients(app)
    return MiniClient(client, FakeMiniappWeChat(fakes.mini_app))


@pytest.fixture
def member(mini, app_ctx):
    mini.sign_in("o-mini-pref")
    assert mini.register("13911113333", purposes=["service_notifications", "marketing"]).status_code == 201
    return services.find_by_phone("13911113333")


def test_a_member_reads_and_changes_their_preferences(mini, member):
    assert mini.get(URL).json == {
        "opted_out": {"service": False, "marketing": False},
        "consented": {"service": True, "marketing": True},
    }
    changed = mini.put(URL, json={"opted_out": {"marketing": True}})
    assert changed.status_code == 200
    assert changed.json["opted_out"] == {"service": False, "marketing": True}
    assert mini.put(URL, json={"opted_out": {"marketing": False, "service": True}}).json["opted_out"] == {
        "service": True,
        "marketing": False,
    }
    assert mini.get(URL).json["opted_out"] == {"service": True, "marketing": False}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"opted_out": {"marketing": "yes"}}, "opted_out"),
        ({"opted_out": {"newsletters": True}}, "opted_out"),
        ({"opted_out": {}}, "opted_out"),
        ({}, "opted_out"),
        ({"opted_out": {"marketing": True}, "extra": 1}, "extra"),
    ],
)
def test_bad_preferences_are_a_422_naming_the_field(mini, member, body, field):
    response = mini.put(URL, json=body, headers={"Accept-Language": "en"})
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]
    assert mini.get(URL).json["opted_out"] == {"service": False, "marketing": False}


def test_the_empty_choice_message_is_localized(mini):
    """Requests in their own app contexts (no ``app_ctx``): each picks its language afresh."""
    mini.sign_in("o-mini-lang")
    assert mini.register("13911114444").status_code == 201
    en = mini.put(URL, json={"opted_out": {}}, headers={"Accept-Language": "en"})
    zh = mini.put(URL, json={"opted_out": {}}, headers={"Accept-Language": "zh-CN"})
    assert en.json["error"]["fields"]["opted_out"] == ["Choose at least one category."]
    assert zh.json["error"]["fields"]["opted_out"] == ["请至少选择一个类别。"]


def test_preferences_need_a_signed_in_member(client):
    assert client.get(URL).status_code == 401
    assert client.put(URL, json={"opted_out": {"marketing": True}}).status_code == 401


def test_the_back_office_reads_a_members_notifications_paged_and_audited(client, app_ctx, fakes):
    member = member_on()
    for period in ("a", "b", "c"):
        planned(member, period=period)
    notify.send_due()
    _agent, token = factories.operator("agent", username="wang.agent")
    url = f"/api/v1/cs/members/{member.member_no}/notifications"
    page = client.get(url, query_string={"per_page": 2, "reason": "member called"}, headers=auth(token))
    assert page.status_code == 200
    assert (page.json["total"], len(page.json["items"]), page.json["page"]) == (3, 2, 1)
    assert {item["channel"] for item in page.json["items"]} == {"official_template"}
    assert page.json["items"][0]["status"] == "sent"
    reads = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "member.read")).all()
    expected = [("operator:wang.agent", "member called", str(member.id))]
    assert [(r.actor_id, r.reason, r.subject_id) for r in reads] == expected
    assert client.get(url, query_string={"per_page": 500}, headers=auth(token)).status_code == 422


def test_a_dealer_manager_cannot_read_another_dealers_members_notifications(client, app_ctx):
    member = member_on()
    _manager, token = factories.operator("dealer_manager", dealer_id=factories.dealer().id)
    response = client.get(f"/api/v1/cs/members/{member.member_no}/notifications", headers=auth(token))
    assert response.status_code == 404


def test_resend_over_the_back_office_is_audited_and_sent_once(client, app_ctx, fakes):
    member = member_on()
    row = planned(member)
    notify.send_due()
    _agent, token = factories.operator("agent", username="zhao.agent")
    url = f"/api/v1/cs/notifications/{row.id}/resend"
    assert client.post(url, json={}, headers=auth(token)).status_code == 422  # a reason is required
    response = client.post(url, json={"reason": "member deleted it"}, headers=auth(token))
    assert response.status_code == 201, response.json
    assert response.json["status"] in ("planned", "sent")
    assert len(fakes.official_account.templates()) == 2
    entry = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "notification.resent"))
    assert (entry.actor_id, entry.reason) == ("operator:zhao.agent", "member deleted it")
    assert (
        client.post("/api/v1/cs/notifications/999999/resend", json={"reason": "x" * 5}, headers=auth(token)).status_code
        == 404
    )
    pending = planned(member, period="later")
    pending.due_at = pending.created_at.replace(year=2099)
    db.session.flush()
    conflict = client.post(
        f"/api/v1/cs/notifications/{pending.id}/resend", json={"reason": "again"}, headers=auth(token)
    )
    assert conflict.status_code == 409


def test_delivery_rates_per_kind_and_channel(client, app_ctx, fakes):
    member = member_on()
    planned(member, period="a")
    skipped = planned(member, period="b")
    notify.send_due()
    db.session.execute(
        sa.update(Notification).where(Notification.id == skipped.id).values(status="skipped", channel="sms")
    )
    _supervisor, token = factories.operator("supervisor")
    today = business_today()  # the app's clock (the tests freeze it), not the database server's date
    response = client.get("/api/v1/cs/notifications/rates", query_string={"since": str(today)}, headers=auth(token))
    assert response.status_code == 200, response.json
    rates = {(r["kind"], r["channel"]): r for r in response.json}
    assert rates[("tier_dropped", "official_template")]["delivery_rate"] == 1.0
    assert rates[("tier_dropped", "sms")]["skipped"] == 1 and rates[("tier_dropped", "sms")]["delivery_rate"] == 0.0
    _agent, agent_token = factories.operator("agent")
    assert (
        client.get(
            "/api/v1/cs/notifications/rates", query_string={"since": str(today)}, headers=auth(agent_token)
        ).status_code
        == 403
    )
    assert (
        client.get(
            "/api/v1/cs/notifications/rates", query_string={"since": "yesterday"}, headers=auth(token)
        ).status_code
        == 422
    )
    edges = [({"since": "0001-01-01"}, "since"), ({"since": str(today), "until": "9999-12-31"}, "until")]
    for edge, field in edges:  # were a 500: the day's start overflowed the time-zone arithmetic
        refused = client.get("/api/v1/cs/notifications/rates", query_string=edge, headers=auth(token))
        assert refused.status_code == 422 and list(refused.json["error"]["fields"]) == [field]
