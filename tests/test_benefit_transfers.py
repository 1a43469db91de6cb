"""Giving a transferable benefit to a friend: the share holds a use, a friend claims it exactly
once (the dealer gets a sales lead), books it, and an unclaimed share comes back after 7 days."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.benefits import booking, catalog, entitlements, sharing
from app.benefits.entitlements import Holder
from app.benefits.models import BenefitShare, EntitlementEntry
from app.core.audit import AuditEntry
from app.core.clock import utcnow
from app.core.db import db
from app.dealers.models import SalesLead
from app.members import services
from app.members.models import Member
from app.wechat import clients
from app.wechat.gateways import PNG_SIGNATURE
from tests import factories
from tests.benefit_helpers import seed_catalog, set_tier, slot
from tests.conftest import run_concurrently
from tests.miniapp_helpers import FakeMiniappWeChat, MiniClient

pytestmark = pytest.mark.postgres


@pytest.fixture
def program(app_ctx):
    seed_catalog()
    return factories.dealer(code="D0701")


def left(member, code="home_test_drive", tier="gold"):
    return entitlements.position(Holder(member.id, None), catalog.benefit_in_force(code), tier).remaining


def gold_giver(dealer):
    giver = factories.member(enrolling_dealer_id=dealer.id)
    set_tier(giver, "gold")
    return giver


def test_a_share_holds_one_use_and_the_first_friend_to_claim_it_gets_it_and_the_dealer_a_lead(program):
    giver, friend, late = gold_giver(program), factories.member(), factories.member()
    shared = sharing.share(giver, benefit_code="home_test_drive", request_id="share-0001", model="ET5")
    again = sharing.share(giver, benefit_code="home_test_drive", request_id="share-0001")
    assert shared.new and not again.new and again.share.id == shared.share.id
    key = shared.share.key
    assert 16 <= len(key) <= 32 and shared.share.dealer_id == program.id
    assert left(giver) == 0  # the gold quota (1) is held by the share
    with pytest.raises(sharing.NothingToShare):
        sharing.share(giver, benefit_code="home_test_drive", request_id="share-0002")
    with pytest.raises(sharing.OwnShare):
        sharing.claim(giver, key)

    claimed = sharing.claim(friend, key)
    assert (claimed.status, claimed.claimed_by_member_id) == ("claimed", friend.id)
    assert sharing.claim(friend, key) is claimed  # the friend's resend
    with pytest.raises(sharing.ShareTaken):
        sharing.claim(late, key)
    lead = db.session.scalar(sa.select(SalesLead))
    assert (lead.dealer_id, lead.member_id, lead.referrer_member_id, lead.source, lead.status, lead.model_interest) == (
        program.id,
        friend.id,
        giver.id,
        "benefit_transfer",
        "new",
        "ET5",
    )


def test_the_friend_books_the_shared_benefit_at_its_dealer_without_quota_or_points(program):
    giver, friend = gold_giver(program), factories.member()  # the friend is Silver: would pay points
    key = sharing.share(giver, benefit_code="home_test_drive", request_id="share-0003").share.key
    sharing.claim(friend, key)
    elsewhere = factories.dealer(code="D0702")
    with pytest.raises(booking.ValidationFailed):
        booking.book(
            friend, benefit_code="home_test_drive", request_id="b-0001", slot_id=slot(elsewhere).id, share_key=key
        )
    made = booking.book(
        friend, benefit_code="home_test_drive", request_id="b-0002", slot_id=slot(program).id, share_key=key
    ).booking
    assert (made.paid_with, made.points_spent, made.dealer_id) == ("share", 0, program.id)
    with pytest.raises(booking.ShareInUse):
        booking.book(
            friend, benefit_code="home_test_drive", request_id="b-0003", slot_id=slot(program).id, share_key=key
        )
    booking.cancel(friend, made.id)  # in time: the share can be booked again
    again = booking.book(
        friend, benefit_code="home_test_drive", request_id="b-0004", slot_id=slot(program).id, share_key=key
    ).booking
    assert again.paid_with == "share"
    stranger = factories.member()
    with pytest.raises(booking.ValidationFailed):
        booking.book(
            stranger, benefit_code="home_test_drive", request_id="b-0005", slot_id=slot(program).id, share_key=key
        )


def test_an_unclaimed_share_returns_to_the_giver_after_7_days_and_can_no_longer_be_claimed(program):
    giver, friend = gold_giver(program), factories.member()
    row = sharing.share(giver, benefit_code="home_test_drive", request_id="share-0004").share
    assert sharing.return_expired(utcnow() + dt.timedelta(days=6)) == 0
    assert sharing.return_expired(utcnow() + dt.timedelta(days=7, minutes=1)) == 1
    assert sharing.return_expired(utcnow() + dt.timedelta(days=8)) == 0
    db.session.refresh(row)
    assert row.status == "returned" and left(giver) == 1
    kinds = db.session.scalars(
        sa.select(EntitlementEntry.kind)
        .where(EntitlementEntry.member_id == giver.id, EntitlementEntry.benefit_code == "home_test_drive")
        .order_by(EntitlementEntry.id)
    ).all()
    assert kinds == ["grant", "transfer", "restore"]
    with pytest.raises(sharing.ShareExpired):
        sharing.claim(friend, row.key)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SalesLead)) == 0


def test_only_transferable_benefits_with_a_quota_can_be_shared(program):
    giver = gold_giver(program)
    with pytest.raises(sharing.NotTransferable):
        sharing.share(giver, benefit_code="vip_lane", request_id="share-0005")
    silver = factories.member(enrolling_dealer_id=program.id)
    with pytest.raises(sharing.NothingToShare):  # Silver pays the test drive with points: nothing to hand over
        sharing.share(silver, benefit_code="home_test_drive", request_id="share-0006")
    lonely = factories.member()
    set_tier(lonely, "gold")
    with pytest.raises(booking.ValidationFailed):  # no car, no enrolling dealer, none chosen
        sharing.share(lonely, benefit_code="home_test_drive", request_id="share-0007")


# --- mini-app ------------------------------------------------------------------------------------


@pytest.fixture
def wechat(fakes, app, http_mock):
    clients.forget_clients(app)
    return FakeMiniappWeChat(fakes.mini_app)


def test_the_mini_app_shares_shows_and_claims_a_benefit(client, wechat, program):
    giver_app = MiniClient(client, wechat)
    giver_app.sign_in("o-giver-1")
    assert giver_app.register("13955550071").status_code == 201
    giver = services.find_by_phone("13955550071")
    set_tier(giver, "gold")
    made = giver_app.post(
        "/api/v1/me/shares",
        json={"benefit": "home_test_drive", "request_id": "tap-000001", "dealer": "D0701", "model": "ES6"},
    )
    assert made.status_code == 201, made.json
    key = made.json["key"]
    assert made.json["status"] == "open" and made.json["mine"] and made.json["scene"] == f"s={key}"
    assert len(made.json["scene"]) <= 32

    friend_app = MiniClient(client, wechat)
    friend_app.sign_in("o-friend-1")
    seen = friend_app.get(f"/api/v1/shares/{key}")
    assert seen.status_code == 200 and seen.json["benefit_name"] == "免费上门试乘试驾" and not seen.json["mine"]
    refused = friend_app.post(f"/api/v1/shares/{key}/claim", json={})
    assert refused.status_code == 403  # a new person registers (accepts the policy) first
    assert friend_app.register("13955550072").status_code == 201
    claimed = friend_app.post(f"/api/v1/shares/{key}/claim", json={})
    assert claimed.status_code == 200 and claimed.json["status"] == "claimed"
    assert [s["key"] for s in friend_app.get("/api/v1/me/shares").json] == [key]
    assert friend_app.get("/api/v1/shares/nosuchkey123").status_code == 404
    bad = giver_app.post("/api/v1/me/shares", json={"benefit": "home test drive!", "request_id": "x"})
    assert bad.status_code == 422 and set(bad.json["error"]["fields"]) == {"benefit", "request_id"}


def test_the_giver_gets_the_shares_mini_app_code_asked_of_wechat_once(client, wechat, fakes, program):
    giver_app = MiniClient(client, wechat)
    giver_app.sign_in("o-giver-2")
    assert giver_app.register("13955550073").status_code == 201
    set_tier(services.find_by_phone("13955550073"), "gold")
    made = giver_app.post(
        "/api/v1/me/shares", json={"benefit": "home_test_drive", "request_id": "tap-000002", "dealer": "D0701"}
    ).json
    key = made["key"]
    assert made["wxacode_url"] == f"/api/v1/me/shares/{key}/wxacode.png"
    first, second = giver_app.get(made["wxacode_url"]), giver_app.get(made["wxacode_url"])
    assert first.status_code == 200 and first.mimetype == "image/png" and first.data.startswith(PNG_SIGNATURE)
    assert second.data == first.data
    calls = [c for c in fakes.mini_app.calls if c["api"] == "getwxacodeunlimit"]
    assert calls == [{"api": "getwxacodeunlimit", "scene": f"s={key}", "page": sharing.CLAIM_PAGE}]  # then kept
    assert db.session.scalar(sa.select(BenefitShare.wxacode_png).where(BenefitShare.key == key)) == first.data

    friend_app = MiniClient(client, wechat)
    friend_app.sign_in("o-friend-2")
    assert friend_app.register("13955550074").status_code == 201
    assert friend_app.get(f"/api/v1/shares/{key}").json["wxacode_url"] is None
    assert friend_app.get(made["wxacode_url"]).status_code == 404  # only the giver
    assert giver_app.get("/api/v1/me/shares/nosuchkey123/wxacode.png").status_code == 404


# --- exactly once ----------------------------------------------------------------------------------


@pytest.mark.committed
def test_a_share_claimed_by_20_friends_at_once_is_claimed_once_with_one_lead(app):
    with app.app_context():
        seed_catalog()
        dealer = factories.dealer(code="D0703")
        giver = gold_giver(dealer)
        friends = [factories.member().id for _ in range(20)]
        key = sharing.share(giver, benefit_code="home_test_drive", request_id="share-race").share.key
        db.session.commit()

    def claim(i):
        with app.app_context():
            friend = db.session.get(Member, friends[i])
            try:
                sharing.claim(friend, key)
            except sharing.ShareTaken:
                db.session.rollback()
                return "taken"
            db.session.commit()
            return "claimed"

    results = run_concurrently(20, claim)
    assert results.count("claimed") == 1 and results.count("taken") == 19, results
    with app.app_context():
        row = db.session.scalar(sa.select(BenefitShare).where(BenefitShare.key == key))
        winner = friends[results.index("claimed")]
        assert row.claimed_by_member_id == winner
        leads = db.session.scalars(sa.select(SalesLead)).all()
        assert [(lead.member_id, lead.source_ref) for lead in leads] == [(winner, f"share:{row.id}")]


# --- the dealer's leads --------------------------------------------------------------------------


def _claimed_lead(program, friend, request_id):
    giver = gold_giver(program)
    key = sharing.share(giver, benefit_code="home_test_drive", request_id=request_id, model="ET7").share.key
    sharing.claim(friend, key)
    return giver


def test_a_dealer_sees_its_leads_masked_and_only_counts_people_without_dealer_sharing(client, program):
    sharing_friend = factories.member(name="王小明", phone="13955550081")
    services.record_consent(
        sharing_friend, policy_version="2026.1", granted=["service_notifications", "dealer_sharing"], channel="miniapp"
    )
    private_friend = factories.member(name="李四", phone="13955550082")
    _claimed_lead(program, sharing_friend, "share-1001")
    _claimed_lead(program, private_friend, "share-1002")
    _manager, token = factories.operator("dealer_manager", dealer_id=program.id)
    other_dealer = factories.dealer(code="D0799")
    _other, other_token = factories.operator("dealer_manager", dealer_id=other_dealer.id)
    _agent, hq_token = factories.operator("agent")

    mine = client.get("/api/v1/cs/leads", headers={"Authorization": f"Bearer {token}"})
    assert mine.status_code == 200, mine.json
    assert mine.json["hidden"] == 1 and len(mine.json["items"]) == 1
    row = mine.json["items"][0]
    assert (row["name"], row["phone"], row["model_interest"], row["source"], row["status"]) == (
        "王**",
        "139****0081",
        "ET7",
        "benefit_transfer",
        "new",
    )
    assert row["member_no"] == sharing_friend.member_no and row["dealer_code"] == "D0701"
    theirs = client.get("/api/v1/cs/leads", headers={"Authorization": f"Bearer {other_token}"}).json
    assert theirs == {"items": [], "hidden": 0}
    everyone = client.get("/api/v1/cs/leads", headers={"Authorization": f"Bearer {hq_token}"}).json
    assert everyone["hidden"] == 0 and {r["phone"] for r in everyone["items"]} == {"139****0081", "139****0082"}

    csv_body = client.get("/api/v1/cs/leads.csv", headers={"Authorization": f"Bearer {token}"})
    assert csv_body.mimetype == "text/csv"
    text = csv_body.get_data(as_text=True)
    assert "139****0081" in text and "13955550081" not in text and "0082" not in text
    assert text.strip().endswith("# 1 more without consent to share with dealers")
    reads = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "sales_leads.read")).all()
    assert len(reads) == 4 and reads[0].details["members"] == [sharing_friend.member_no]


def test_the_dealer_moves_its_own_lead_along_and_bad_input_is_a_422(client, program):
    friend = factories.member()
    _claimed_lead(program, friend, "share-1003")
    lead = db.session.scalar(sa.select(SalesLead))
    _manager, token = factories.operator("dealer_manager", dealer_id=program.id)
    _other, other_token = factories.operator("dealer_manager", dealer_id=factories.dealer(code="D0798").id)
    moved = client.patch(
        f"/api/v1/cs/leads/{lead.id}", json={"status": "contacted"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert moved.status_code == 200 and moved.json["status"] == "contacted"
    assert moved.json["name"] is None  # no dealer_sharing consent: the status moves, the person stays hidden
    refused = client.patch(
        f"/api/v1/cs/leads/{lead.id}", json={"status": "lost"}, headers={"Authorization": f"Bearer {other_token}"}
    )
    assert refused.status_code == 404
    bad = client.patch(
        f"/api/v1/cs/leads/{lead.id}", json={"status": "won"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert bad.status_code == 422 and "status" in bad.json["error"]["fields"]
    assert client.get("/api/v1/cs/leads?status=maybe", headers={"Authorization": f"Bearer {token}"}).status_code == 422
