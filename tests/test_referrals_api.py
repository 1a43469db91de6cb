"""Referral endpoints: the mini-app (my code and referees, a referee's claim), the back office
(review queue and decisions, funnel JSON/CSV, dealer leads by consent), the chat keyword 推荐,
the rule simulation over referral milestones, the real getwxacodeunlimit, and the walk-through."""

from __future__ import annotations

import pytest
import responses
import sqlalchemy as sa

from app.core.audit import AuditEntry
from app.core.clock import to_business, utcnow
from app.core.db import db
from app.gateways import Refused, Unavailable
from app.members import services
from app.points import queries, rulesets, simulation
from app.points.rules import rule_to_json
from app.referrals import codes, milestones
from app.referrals.models import Referral
from app.wechat import clients, conversation
from app.wechat.gateways import PNG_SIGNATURE
from app.wechat.replies import Articles
from tests import factories
from tests.miniapp_helpers import FakeMiniappWeChat, MiniClient
from tests.referral_helpers import newcomer, refer
from tests.wechat_helpers import use_real_wechat

API = "https://api.weixin.qq.com"
PRICE = 20_000_000


@pytest.fixture
def shop(app_ctx):
    dealer = factories.dealer(code="D0101", latitude=43.88, longitude=125.27)
    factories.staff(dealer, code="SA0101")
    return dealer


@pytest.fixture
def wechat(fakes, app, http_mock):
    clients.forget_clients(app)
    return FakeMiniappWeChat(fakes.mini_app)


def _mini(client, wechat, openid: str, phone: str, purposes=None) -> MiniClient:
    mini = MiniClient(client, wechat)
    mini.sign_in(openid)
    assert mini.register(phone, purposes=purposes).status_code == 201
    return mini


def _audits(action: str) -> list[AuditEntry]:
    return list(db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


def test_my_referrals_and_a_friends_claim_through_the_mini_app(shop, client, wechat):
    alice = _mini(client, wechat, "o-alice", "13955550001")
    mine = alice.get("/api/v1/me/referrals", query_string={"device_id": "alice-phone"}).json
    assert mine["code"] and mine["link"].endswith(f"code={mine['code']}") and len(mine["scene"]) <= 32
    assert mine["referees"] == [] and mine["yearly_cap"] == 10
    image = alice.get(mine["wxacode_url"])
    assert image.status_code == 200 and image.mimetype == "image/png" and image.data.startswith(PNG_SIGNATURE)

    bob = _mini(client, wechat, "o-bob", "13955550002", purposes=["service_notifications", "dealer_sharing"])
    claimed = bob.post("/api/v1/me/referral-claims", json={"code": mine["code"].lower(), "dealer_code": "D0101"})
    assert claimed.status_code == 200 and claimed.json["attributed"] is True
    assert claimed.json["dealer_code"] == "D0101" and claimed.json["milestone"] == "lead"
    again = bob.post("/api/v1/me/referral-claims", json={"code": mine["code"]})
    assert again.json == {"attributed": False, "referral_id": None, "dealer_code": None, "milestone": None}

    referees = alice.get("/api/v1/me/referrals").json["referees"]
    assert [(r["phone"], r["milestone"], r["reward_status"]) for r in referees] == [("139****0002", "lead", "none")]
    assert queries.balance(services.find_by_phone("13955550001").id).available >= 50  # the lead reward


def test_claims_refuse_self_referral_unknown_codes_and_bad_input(shop, client, wechat):
    alice = _mini(client, wechat, "o-alice2", "13955550011")
    code = alice.get("/api/v1/me/referrals", query_string={"device_id": "shared-ipad"}).json["code"]
    own = alice.post("/api/v1/me/referral-claims", json={"code": code, "dealer_code": "D0101"})
    assert own.status_code == 409 and own.json["error"]["code"] == "self_referral"
    sibling = _mini(client, wechat, "o-sibling", "13955550012")
    on_her_ipad = sibling.post(
        "/api/v1/me/referral-claims", json={"code": code, "dealer_code": "D0101", "device_id": "shared-ipad"}
    )
    assert on_her_ipad.status_code == 409
    unknown = sibling.post("/api/v1/me/referral-claims", json={"code": "ZZZZZZZZ", "dealer_code": "D0101"})
    assert unknown.status_code == 404 and unknown.json["error"]["code"] == "unknown_referral_code"
    bad = sibling.post("/api/v1/me/referral-claims", json={"code": code, "latitude": 200, "dealer_code": "NOPE"})
    assert bad.status_code == 422 and "latitude" in bad.json["error"]["fields"]
    no_dealer = sibling.post("/api/v1/me/referral-claims", json={"code": code, "dealer_code": "NOPE"})
    assert no_dealer.status_code == 422 and "dealer_code" in no_dealer.json["error"]["fields"]
    assert _audits("referral.self_referral_refused")


def test_a_supervisor_decides_a_flagged_ring_and_both_are_audited(shop, client):
    a, b, c = newcomer(), newcomer(), newcomer()
    refer(a, b)
    refer(b, c)
    ring = refer(c, a).referral
    milestones.delivery(a.phone, order_no="SO-RING", model_code="MAGOTAN", price_fen=PRICE, at=utcnow())
    _, agent_token = factories.operator("operator")
    _, supervisor_token = factories.operator("supervisor")
    queue = client.get("/api/v1/program/referrals/reviews", headers={"Authorization": f"Bearer {agent_token}"})
    assert [item["id"] for item in queue.json] == [ring.id] and queue.json[0]["flags"] == ["ring"]
    assert _audits("referral.review_queue.read")
    url = f"/api/v1/program/referrals/reviews/{ring.id}/decision"
    body = {"decision": "approve", "reason": "family members, checked by phone"}
    assert client.post(url, json=body, headers={"Authorization": f"Bearer {agent_token}"}).status_code == 403
    decided = client.post(url, json=body, headers={"Authorization": f"Bearer {supervisor_token}"})
    assert decided.status_code == 200 and decided.json["review"] == "approved"
    assert decided.json["reward_status"] == "credited"
    assert queries.balance(c.id).pending == 2000
    [audit] = _audits("referral.review.approve")
    assert audit.reason == body["reason"] and audit.subject_id == str(ring.id)
    twice = client.post(url, json=body, headers={"Authorization": f"Bearer {supervisor_token}"})
    assert twice.status_code == 409


def test_a_rejected_flag_pays_nothing(shop, client):
    a, b = newcomer(), newcomer()
    refer(a, b)
    ring = refer(b, a).referral
    _, token = factories.operator("supervisor")
    rejected = client.post(
        f"/api/v1/program/referrals/reviews/{ring.id}/decision",
        json={"decision": "reject", "reason": "a ring"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert rejected.json["reward_status"] == "rejected"
    milestones.delivery(a.phone, order_no="SO-REJ", model_code="MAGOTAN", price_fen=PRICE, at=utcnow())
    assert queries.balance(b.id).pending == 0


def test_the_funnel_per_dealer_and_month_as_json_and_csv(shop, client):
    other = factories.dealer(code="D0202")
    referrer = factories.member()
    friends = [newcomer() for _ in range(3)]
    refer(referrer, friends[0])
    refer(referrer, friends[1])
    refer(referrer, friends[2], dealer_code="D0202")
    milestones.test_drive(friends[0].phone, model_code="MAGOTAN", at=utcnow())
    milestones.delivery(friends[0].phone, order_no="SO-F1", model_code="MAGOTAN", price_fen=PRICE, at=utcnow())
    milestones.cancellation("SO-F1", on=utcnow().date(), at=utcnow(), source_event_id=None)
    db.session.flush()
    _, token = factories.operator("operator")
    month = to_business(utcnow()).strftime("%Y-%m")
    rows = client.get(
        "/api/v1/program/referrals/funnel", query_string={"month": month}, headers={"Authorization": f"Bearer {token}"}
    ).json
    by_dealer = {row["dealer_code"]: row for row in rows}
    assert by_dealer["D0101"] | {"month": month} == {
        "dealer_code": "D0101", "month": month, "leads": 2, "test_drives": 1, "orders": 1, "deliveries": 1,
        "rewarded": 1, "reward_points": 2000, "capped": 0, "held": 0, "clawed_back": 1, "clawed_back_points": 2000,
    }  # fmt: skip
    assert by_dealer["D0202"]["leads"] == 1
    _, manager = factories.operator("dealer_manager", dealer_id=other.id)
    scoped = client.get(
        "/api/v1/program/referrals/funnel.csv",
        query_string={"month": month},
        headers={"Authorization": f"Bearer {manager}"},
    )
    lines = scoped.get_data(as_text=True).strip().splitlines()
    assert scoped.mimetype == "text/csv" and lines[0].startswith("dealer_code,month,leads")
    assert len(lines) == 2 and lines[1].startswith(f"D0202,{month},1,")
    foreign = client.get(
        "/api/v1/program/referrals/funnel",
        query_string={"month": month, "dealer_code": "D0101"},
        headers={"Authorization": f"Bearer {manager}"},
    )
    assert foreign.status_code == 404
    bad = client.get(
        "/api/v1/program/referrals/funnel",
        query_string={"month": "2026-13"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert bad.status_code == 422 and "month" in bad.json["error"]["fields"]


def test_a_dealer_sees_a_lead_only_with_the_referees_consent(shop, client):
    referrer = factories.member()
    consenting, private = newcomer(sharing=True), newcomer(sharing=False)
    refer(referrer, consenting)
    refer(referrer, private)
    _, manager = factories.operator("dealer_manager", dealer_id=shop.id)
    leads = client.get(
        "/api/v1/program/referrals/leads",
        query_string={"month": to_business(utcnow()).strftime("%Y-%m")},
        headers={"Authorization": f"Bearer {manager}"},
    ).json
    assert leads["not_shared"] == 1
    assert [lead["phone"] for lead in leads["shared"]] == [consenting.phone]
    assert _audits("referral.leads.read")


def test_the_chat_keyword_answers_with_the_referral_card(shop):
    referrer, friend = factories.member(), newcomer()
    refer(referrer, friend)
    milestones.delivery(friend.phone, order_no="SO-CHAT", model_code="MAGOTAN", price_fen=PRICE, at=utcnow())
    reply = conversation.answer(conversation.intent_of("推荐"), referrer)
    assert isinstance(reply, Articles)
    [card] = reply.items
    code = codes.code_of(referrer.id).code
    assert code in card.description and card.url.endswith(f"code={code}")
    assert "2000" in card.description  # the reward cooling


def test_simulation_replays_a_month_of_referrals_with_a_changed_reward(shop):
    referrer = factories.member()
    for n in range(3):
        friend = newcomer()
        refer(referrer, friend)  # no referral can predate the rule set of migration g1
        milestones.delivery(friend.phone, order_no=f"SO-SIM-{n}", model_code="MAGOTAN", price_fen=PRICE, at=utcnow())
    draft = rulesets.draft_from_published("referral 3000", actor="test")
    rules = [rule_to_json(r) for r in draft.rules]
    for rule in rules:
        if rule["code"] == "referral_referrer_reward":
            rule["formula"] = {"type": "fixed", "points": 3000}
    rulesets.replace_rules(draft, rules, actor="test")
    report = simulation.simulate(draft, days=30)
    assert report["proposed"]["by_rule"]["referral_referrer_reward"] == 9000
    assert report["published"]["by_rule"]["referral_referrer_reward"] == 6000
    assert report["difference"]["reward_points"] == 3000
    assert report["difference"]["cost_fen"] == 3000 * 20  # ¥600 at 5 points per ¥1


@pytest.fixture
def real(app, app_ctx, monkeypatch, http_mock):
    gateways = use_real_wechat(app, monkeypatch)
    http_mock.add(responses.POST, f"{API}/cgi-bin/stable_token", json={"access_token": "TOKEN", "expires_in": 7200})
    return gateways


def test_the_real_getwxacodeunlimit_sends_the_scene_and_reads_the_image(real, http_mock):
    png = PNG_SIGNATURE + b"\x00\x00\x00\rIHDR-recorded"
    call = http_mock.add(responses.POST, f"{API}/wxa/getwxacodeunlimit", body=png, content_type="image/png", status=200)
    assert real.mini_app.unlimited_code("r=ABCDEFGH", page="pages/referral/index") == png
    sent = call.calls[0].request
    assert "access_token=" in sent.url
    import json

    assert json.loads(sent.body)["scene"] == "r=ABCDEFGH" and json.loads(sent.body)["page"] == "pages/referral/index"
    http_mock.replace(
        responses.POST, f"{API}/wxa/getwxacodeunlimit", json={"errcode": 40169, "errmsg": "invalid length for scene"}
    )
    with pytest.raises(Refused) as refused:
        real.mini_app.unlimited_code("x" * 33)
    assert refused.value.code == 40169
    http_mock.replace(responses.POST, f"{API}/wxa/getwxacodeunlimit", body=b"<html>gateway</html>", status=200)
    with pytest.raises(Unavailable):
        real.mini_app.unlimited_code("r=ABCDEFGH")


def test_the_walkthrough_command_plays_the_whole_story(shop, app):
    db.session.flush()
    result = app.test_cli_runner().invoke(args=["referrals", "walkthrough"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "referral" in out and "test_drive.completed → 202" in out and "vehicle.delivered → 202" in out
    assert "reward credited (2000 points)" in out
    assert "pending 2000" in out.split("6. ")[1].splitlines()[0]
    assert "available 2150" in out.split("7. ")[1]
    assert "clawed back 2000" in out
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Referral)) == 1
