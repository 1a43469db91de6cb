"""The mini-app API: sign-in, joining, consent, profile, vehicles, points, member code, dealers."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.core import tunables
from app.core.audit import AuditEntry
from app.core.db import db
from app.core.security import cipher
from app.members import services
from app.members.models import Consent, Member, Ownership, WechatIdentity, address_index
from app.members.sessions import MiniappSession
from app.members.vehicle_claims import VehicleClaim
from app.points.models import PointEntry
from app.wechat import clients
from tests import dms_events, factories
from tests.conftest import WECHAT
from tests.miniapp_helpers import FakeMiniappWeChat, MiniClient
from tests.wechat_helpers import Callback, SentMessages, event_xml


@pytest.fixture
def wechat(fakes, app, http_mock):
    clients.forget_clients(app)
    return FakeMiniappWeChat(fakes.mini_app)


@pytest.fixture
def mini(client, wechat):
    return MiniClient(client, wechat)


@pytest.fixture
def shop(app_ctx):
    dealer = factories.dealer(code="D0101", city="长春", region="north", latitude=43.88, longitude=125.28)
    factories.staff(dealer, code="SA0101", name="王磊")
    return dealer


@pytest.fixture
def member(mini, app_ctx):
    mini.sign_in("o-mini-1")
    assert mini.register("13911112222").status_code == 201
    return services.find_by_phone("13911112222")


# --- sign-in --------------------------------------------------------------------------------


def test_sign_in_issues_our_token_and_keeps_the_session_key(mini, app_ctx):
    response = mini.sign_in("o-new")
    body = response.json
    assert body["needs_registration"] is True and body["member"] is None
    assert body["current_policy_version"] == "2026.1"
    assert "sk-o-new" not in response.get_data(as_text=True)
    stored = db.session.execute(sa.text("SELECT session_key FROM miniapp_sessions")).scalar_one()
    assert "sk-o-new" not in stored
    assert db.session.scalar(sa.select(MiniappSession.session_key)) == "sk-o-new"
    assert mini.get("/api/v1/me").json["needs_registration"] is True


def test_an_invalid_login_code_is_refused(client, wechat, app_ctx):
    response = client.post("/api/v1/sessions", json={"code": "stolen"})
    assert response.status_code == 401
    assert response.json["error"]["message"] == "登录凭证无效或已被使用，请重试。"
    assert client.post("/api/v1/sessions", json={}).status_code == 422


def test_unionid_joins_the_service_account_member(mini, app_ctx):
    member = factories.member()
    db.session.add(
        WechatIdentity(
            app_kind="official",
            app_id=WECHAT["WECHAT_APP_ID"],
            openid="o-official",
            unionid="union-1",
            member_id=member.id,
            following=True,
        )
    )
    db.session.flush()
    body = mini.sign_in("o-mini-twin", unionid="union-1").json
    assert body["member"]["member_no"] == member.member_no and body["needs_registration"] is False


def test_a_follower_from_an_advisor_qr_who_opens_the_mini_app_stays_one_member(fakes, mini, client, http_mock, app_ctx):
    sent = SentMessages(fakes.official_account)
    factories.staff(factories.dealer(code="D0101"), code="SA0101")
    Callback(client).reply(event_xml("o-qr-person", "subscribe", EventKey="qrscene_adv:SA0101"))
    Callback(client).reply(event_xml("o-qr-person", "SCAN", EventKey="adv:SA0101"))
    official = db.session.scalar(sa.select(WechatIdentity).where(WechatIdentity.openid == "o-qr-person"))
    assert official.unionid == "union-o-qr-person" and sent.user_info == ["o-qr-person"]  # asked once
    prospect = db.session.get(Member, official.member_id)
    body = mini.sign_in("o-mini-person", unionid="union-o-qr-person").json
    assert body["member"]["member_no"] == prospect.member_no
    assert mini.register("13911116666").status_code == 201
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Member)) == 1
    db.session.refresh(prospect)
    assert prospect.phone == "13911116666" and prospect.enrolling_staff_id is not None  # attribution kept
    welcome = sa.select(sa.func.count()).where(
        PointEntry.member_id == prospect.id, PointEntry.rule_code == "welcome_gift"
    )
    assert db.session.scalar(welcome) == 1


def test_sessions_rotate_and_sign_out(mini, app_ctx, time_machine):
    mini.sign_in("o-rot")
    old = mini.token
    refreshed = mini.post("/api/v1/sessions/refresh")
    assert refreshed.status_code == 201
    mini.token = old
    assert mini.get("/api/v1/me").status_code == 401
    mini.token = refreshed.json["token"]
    assert mini.get("/api/v1/me").status_code == 200
    assert mini.delete("/api/v1/sessions/current").status_code == 204
    assert mini.get("/api/v1/me").status_code == 401
    mini.sign_in("o-rot")
    time_machine.move_to(dt.datetime.now(dt.UTC) + dt.timedelta(hours=2, minutes=1))
    assert mini.get("/api/v1/me").status_code == 401


def test_refreshing_cannot_extend_a_sign_in_past_its_absolute_lifetime(mini, app_ctx, time_machine):
    tunables.set_value("miniapp.session_max_hours", 3, actor=("test", "t"))
    db.session.flush()
    start = dt.datetime.now(dt.UTC)
    time_machine.move_to(start, tick=False)
    mini.sign_in("o-long")
    for hours in (1.5, 2.9):
        time_machine.move_to(start + dt.timedelta(hours=hours), tick=False)
        refreshed = mini.post("/api/v1/sessions/refresh")
        assert refreshed.status_code == 201
        mini.token = refreshed.json["token"]
        assert dt.datetime.fromisoformat(refreshed.json["expires_at"]) <= start + dt.timedelta(hours=3)
    time_machine.move_to(start + dt.timedelta(hours=3, seconds=1), tick=False)
    assert mini.get("/api/v1/me").status_code == 401
    assert mini.post("/api/v1/sessions/refresh").status_code == 401
    assert mini.sign_in("o-long").status_code == 201  # signing in again starts a new lifetime


def test_sign_in_is_rate_limited_per_ip(client, wechat, app_ctx):
    statuses = [client.post("/api/v1/sessions", json={"code": f"x{i}"}).status_code for i in range(22)]
    assert statuses[:20] == [401] * 20 and statuses[20:] == [429, 429]
    limited = client.post("/api/v1/sessions", json={"code": "x"})
    assert limited.json["error"]["code"] == "rate_limited" and "Retry-After" in limited.headers


def test_member_code_is_rate_limited_per_user_not_per_shared_ip(mini, client, wechat):
    """Two members behind one IP (a dealership's Wi-Fi): one exhausting its limit leaves the other free.

    No ``app_ctx`` here on purpose: with an outer app context every request would share ``g``, and
    a limit checked before authentication would still seem to know the user."""
    mini.sign_in("o-rate-1")
    assert mini.register("13911114444").status_code == 201
    statuses = [mini.get("/api/v1/me/member-code").status_code for _ in range(31)]
    assert statuses[:30] == [200] * 30 and statuses[30] == 429
    other = MiniClient(client, wechat)
    other.sign_in("o-rate-2")
    assert other.register("13911115555").status_code == 201
    assert other.get("/api/v1/me/member-code").status_code == 200


# --- joining --------------------------------------------------------------------------------


def test_registration_records_consent_then_phone_and_credits_the_welcome_gift(mini, app_ctx):
    mini.sign_in("o-join")
    response = mini.register("13911113333", purposes=["service_notifications", "marketing"])
    assert response.status_code == 201
    body = response.json
    assert body["joined_existing"] is False and body["credited_points"] == 500
    member = services.find_by_phone("13911113333")
    assert member.enrollment_channel == "miniapp" and member.status == "active"
    purposes = services.consent_state(member).purposes
    assert purposes == {
        "privacy_policy": True,
        "service_notifications": True,
        "marketing": True,
        "dealer_sharing": False,
    }
    assert mini.get("/api/v1/me").json["needs_registration"] is False
    assert mini.register("13911113333").status_code == 201  # a double tap changes nothing
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Member)) == 1


def test_an_outdated_policy_version_is_refused_before_anything_personal_is_fetched(mini, wechat, app_ctx):
    mini.sign_in("o-old-policy")
    response = mini.register("13911114444", policy="2025.1")
    assert response.status_code == 422
    assert "policy_version" in response.json["error"]["fields"]
    assert wechat.phone_calls == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Member)) == 0


def test_a_buyer_from_the_dms_is_joined_not_duplicated(mini, shop, post_dms):
    assert post_dms(dms_events.delivered("13800000001", factories.vin(), price_fen=20_000_000)).status_code == 202
    buyer = services.find_by_phone("13800000001")
    mini.sign_in("o-buyer")
    body = mini.register("13800000001").json
    assert body["joined_existing"] is True and body["member"]["member_no"] == buyer.member_no
    assert body["credited_points"] == 2_000 + 500  # purchase points released, welcome gift
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Member)) == 1
    db.session.refresh(buyer)
    assert buyer.status == "active"
    assert len(mini.get("/api/v1/me/vehicles").json["vehicles"]) == 1


def test_a_phone_registered_with_another_wechat_is_a_conflict(mini, member, client, wechat):
    other = MiniClient(client, wechat)
    other.sign_in("o-other-phone")
    response = other.register("13911112222")
    assert response.status_code == 409
    assert "其他微信" in response.json["error"]["message"]


# --- consent and profile --------------------------------------------------------------------


def test_withdrawing_a_purpose_takes_effect_at_once_and_is_audited(mini, member):
    response = mini.put("/api/v1/me/consents", json={"purposes": []})
    assert response.json["purposes"] == {"service_notifications": False, "marketing": False, "dealer_sharing": False}
    assert services.consent_state(member).purposes["service_notifications"] is False
    audit = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "member.consent_changed"))
    assert audit.details == {"service_notifications": False}


def test_after_a_policy_change_nothing_personal_is_stored_until_the_member_accepts_it(mini, member):
    tunables.set_value("privacy.policy_version", "2026.2", actor=("test", "t"))
    db.session.flush()
    assert mini.get("/api/v1/me").json["needs_consent"] is True
    refused = mini.patch("/api/v1/me/profile", json={"city": "长春"})
    assert refused.status_code == 403 and refused.json["error"]["code"] == "consent_required"
    assert mini.post("/api/v1/me/vehicles", json={"vin": factories.vin()}).status_code == 403
    # changing purposes is not a silent acceptance of the new policy
    assert mini.put("/api/v1/me/consents", json={"purposes": []}).json["error"]["code"] == "consent_required"
    wrong = mini.put("/api/v1/me/consents", json={"purposes": [], "policy_version": "2026.1"})
    assert wrong.status_code == 422 and "policy_version" in wrong.json["error"]["fields"]
    accepted = mini.put("/api/v1/me/consents", json={"purposes": ["marketing"], "policy_version": "2026.2"})
    assert accepted.status_code == 200 and accepted.json["accepted_policy_version"] == "2026.2"
    audit = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "member.consent_changed")).all()[-1]
    assert audit.details["privacy_policy_version"] == "2026.2" and audit.details["marketing"] is True
    assert mini.patch("/api/v1/me/profile", json={"city": "长春"}).status_code == 200


def test_the_home_address_is_shown_in_full_stored_encrypted_and_erased_on_withdrawal(mini, member):
    address = "长春市绿园区西安大路1688号"
    assert mini.patch("/api/v1/me/profile", json={"address": address}).json["address"] == address
    assert mini.get("/api/v1/me/profile").json["address"] == address
    stored, index = db.session.execute(
        sa.text("SELECT address, address_index FROM members WHERE id = :id"), {"id": member.id}
    ).one()
    assert address not in stored and cipher().decrypt(stored) == address
    assert index == address_index("长春市 绿园区 西安大路 1688 号") and "1688" not in index
    too_long = mini.patch("/api/v1/me/profile", json={"address": "长" * 201}, headers={"Accept-Language": "en"})
    assert too_long.status_code == 422 and "address" in too_long.json["error"]["fields"]
    assert mini.post("/api/v1/me/consents/withdraw", json={"confirm": True}).status_code == 204
    db.session.expire_all()
    assert db.session.execute(
        sa.text("SELECT address, address_index FROM members WHERE id = :id"), {"id": member.id}
    ).one() == (None, None)
    erased = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "member.consent_withdrawn"))
    assert "address" in erased.details["erased"]


def test_withdrawing_the_policy_erases_personal_data_and_closes_the_membership(mini, member):
    mini.patch("/api/v1/me/profile", json={"name": "李雷", "birthday": "1990-05-01"})
    car = factories.vehicle(owner=member)
    assert mini.post("/api/v1/me/vehicles", json={"vin": factories.vin(), "plate": "吉A54321"}).status_code == 202
    assert mini.post("/api/v1/me/consents/withdraw", json={"confirm": False}).status_code == 422
    assert mini.post("/api/v1/me/consents/withdraw", json={"confirm": True}).status_code == 204
    db.session.refresh(member)
    assert (member.status, member.name, member.phone, member.phone_index, member.birthday) == (
        "closed",
        None,
        None,
        None,
        None,
    )
    assert mini.get("/api/v1/me/points").json["error"]["code"] == "not_a_member"
    # nothing ties the member to a car any more: links and claims are gone (tests/test_privacy_hardening.py)
    assert db.session.scalar(sa.select(Ownership).where(Ownership.vehicle_id == car.id)) is None
    assert db.session.scalar(sa.select(VehicleClaim).where(VehicleClaim.member_id == member.id)) is None
    assert (
        db.session.scalar(
            sa.select(Consent.granted)
            .where(Consent.member_id == member.id, Consent.purpose == "privacy_policy")
            .order_by(Consent.id.desc())
            .limit(1)
        )
        is False
    )


def test_profile_updates_and_the_birthday_changes_only_once(mini, member):
    before = mini.get("/api/v1/me/profile").json
    assert before["phone"] == "139****2222"
    assert before["birthday"] is None and before["birthday_changes_left"] is None  # setting it is free
    body = mini.patch(
        "/api/v1/me/profile", json={"name": "李雷", "gender": "male", "birthday": "1990-05-01", "city": "长春"}
    ).json
    assert (body["name"], body["birthday"], body["birthday_changes_left"]) == ("李雷", "1990-05-01", 1)
    assert mini.patch("/api/v1/me/profile", json={"birthday": "1990-06-01"}).json["birthday_changes_left"] == 0
    refused = mini.patch("/api/v1/me/profile", json={"birthday": "1990-07-01"})
    assert refused.status_code == 409 and "只能修改一次" in refused.json["error"]["message"]


def test_the_profile_names_the_preferred_dealer_while_it_is_open(mini, member):
    assert mini.get("/api/v1/me/profile").json["preferred_dealer"] is None
    dealer = factories.dealer(code="D0709")
    member.preferred_dealer_id = dealer.id  # as the CRM's profile update sets it
    db.session.commit()
    assert mini.get("/api/v1/me/profile").json["preferred_dealer"] == "D0709"
    dealer.active = False
    db.session.commit()
    assert mini.get("/api/v1/me/profile").json["preferred_dealer"] is None


def test_profile_validation_is_field_by_field_and_localized(mini, member):
    response = mini.patch(
        "/api/v1/me/profile",
        json={"gender": "robot", "birthday": "2999-01-01", "shoe": 42},
        headers={"Accept-Language": "en"},
    )
    assert response.status_code == 422
    fields = response.json["error"]["fields"]
    assert fields["gender"] == ["Must be one of: male, female, unknown."]
    assert fields["shoe"] == ["Unknown field."]
    assert mini.patch("/api/v1/me/profile", json={"locale": "en"}).status_code == 200
    future = mini.patch("/api/v1/me/profile", json={"birthday": "2999-01-01"})
    assert future.json["error"]["fields"] == {"birthday": ["Please enter a real date of birth."]}


# --- vehicles -------------------------------------------------------------------------------


def test_an_unknown_car_becomes_a_claim_a_dealer_approves(mini, member, client):
    vin = factories.vin()
    dealer = factories.dealer()
    body = {"vin": vin.lower(), "plate": "吉a12345", "dealer_code": dealer.code}
    response = mini.post("/api/v1/me/vehicles", json=body)
    assert response.status_code == 202 and response.json["outcome"] == "pending"
    claim_id = response.json["claim"]["id"]
    assert mini.post("/api/v1/me/vehicles", json={"vin": "LFV2A21K9D3000001"}).status_code == 422  # check digit
    _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
    approve = client.post(
        f"/api/v1/cs/vehicle-claims/{claim_id}/approve",
        json={"note": "发票已核"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert approve.status_code == 422  # the car is unknown: describe it
    approve = client.post(
        f"/api/v1/cs/vehicle-claims/{claim_id}/approve",
        json={"model_code": "TAYRON", "model_name": "探岳", "model_year": 2025},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert approve.json["status"] == "approved"
    vehicles = mini.get("/api/v1/me/vehicles").json
    assert [v["vin"] for v in vehicles["vehicles"]] == [vin] and vehicles["vehicles"][0]["plate"] == "吉A12345"
    assert mini.delete(f"/api/v1/me/vehicles/{vin}").status_code == 204
    assert mini.get("/api/v1/me/vehicles").json["vehicles"] == []
    assert mini.delete(f"/api/v1/me/vehicles/{vin}").status_code == 404


def test_a_member_can_have_only_three_cars_waiting_for_verification(mini, member):
    for _ in range(3):
        assert mini.post("/api/v1/me/vehicles", json={"vin": factories.vin()}).status_code == 202
    fourth = mini.post("/api/v1/me/vehicles", json={"vin": factories.vin()})
    assert fourth.status_code == 409 and fourth.json["error"]["code"] == "conflict"


def test_approving_a_claim_on_someone_elses_car_is_a_resale_a_supervisor_decides(mini, member, client):
    seller = factories.member()
    selling_dealer, other_dealer = factories.dealer(), factories.dealer()
    car = factories.vehicle(owner=seller)
    car.selling_dealer_id = selling_dealer.id
    claim_id = mini.post("/api/v1/me/vehicles", json={"vin": car.vin}).json["claim"]["id"]

    def approve_as(role: str, **kwargs: object) -> object:
        _operator, token = factories.operator(role, **kwargs)
        url = f"/api/v1/cs/vehicle-claims/{claim_id}/approve"
        return client.post(url, json={}, headers={"Authorization": f"Bearer {token}"})

    assert approve_as("dealer_manager", dealer_id=other_dealer.id).status_code == 404  # not their claim
    assert approve_as("dealer_manager", dealer_id=selling_dealer.id).status_code == 403  # it has an owner
    assert approve_as("agent").status_code == 403
    assert approve_as("supervisor").status_code == 200
    ends = db.session.execute(
        sa.select(Ownership.member_id, Ownership.end_reason)
        .where(Ownership.vehicle_id == car.id)
        .order_by(Ownership.id)
    ).all()
    assert [tuple(row) for row in ends] == [(seller.id, "resale"), (member.id, None)]
    seller_audit = db.session.scalar(
        sa.select(AuditEntry).where(
            AuditEntry.action == "vehicle.ownership_ended", AuditEntry.subject_id == str(seller.id)
        )
    )
    assert seller_audit is not None and seller_audit.details["vehicle"] == car.id


# --- points, tier, member code, subscriptions -------------------------------------------------


def test_points_with_etag_history_and_tier(mini, member):
    first = mini.get("/api/v1/me/points")
    assert first.status_code == 200 and first.json["available"] == 500
    etag = first.headers["ETag"]
    assert mini.get("/api/v1/me/points", headers={"If-None-Match": etag}).status_code == 304
    from app.points import ledger

    ledger.earn(
        ledger.Earning(member_id=member.id, currency="reward", points=50, idempotency_key="more", source_type="test")
    )
    db.session.flush()
    changed = mini.get("/api/v1/me/points", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json["available"] == 550
    history = mini.get("/api/v1/me/points/history?per_page=1").json
    assert history["total"] == 2 and history["items"][0]["points"] == 50
    tier = mini.get("/api/v1/me/tier").json
    assert (tier["tier"], tier["tier_name"], tier["next_tier_name"], tier["points_to_next"]) == (
        "silver",
        "银卡",
        "金卡",
        150_000,
    )


def test_the_member_code_is_scanned_once_within_60_seconds(mini, member, client, wechat, time_machine):
    issued = mini.get("/api/v1/me/member-code").json
    assert issued["expires_in"] == 60 and issued["image"].startswith("data:image/png;base64,")
    staff = MiniClient(client, wechat)
    staff.sign_in("o-advisor")
    advisor = factories.staff(factories.dealer(), code="SA0900", name="陈晨")
    from app.members.staff_mode import bind, issue_invite

    bind(db.session.get(WechatIdentity, _identity_id("o-advisor")), issue_invite(advisor, actor="test")[0])
    card = staff.post("/api/v1/staff/scans", json={"code": issued["code"]})
    assert card.status_code == 200, card.json
    assert (card.json["member_no"], card.json["phone"], card.json["tier_name"]) == (
        member.member_no,
        "139****2222",
        "银卡",
    )
    assert db.session.scalar(sa.select(AuditEntry.actor_id).where(AuditEntry.reason.like("member code%"))) == "SA0900"
    again = staff.post("/api/v1/staff/scans", json={"code": issued["code"]})
    assert again.status_code == 422 and "已被扫描" in again.json["error"]["message"]
    tampered = issued["code"][:-1] + ("0" if issued["code"][-1] != "0" else "1")
    assert staff.post("/api/v1/staff/scans", json={"code": tampered}).status_code == 422
    late = mini.get("/api/v1/me/member-code").json["code"]
    time_machine.move_to(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=61))
    staff.sign_in("o-advisor")  # a fresh session (the old one may have expired with the clock jump)
    expired = staff.post("/api/v1/staff/scans", json={"code": late})
    assert expired.status_code == 422 and "已过期" in expired.json["error"]["message"]


def test_a_refused_scan_of_a_closed_membership_is_still_audited(mini, member, client, wechat):
    code = mini.get("/api/v1/me/member-code").json["code"]
    member.status = "closed"
    db.session.flush()
    staff = MiniClient(client, wechat)
    staff.sign_in("o-advisor")
    advisor = factories.staff(factories.dealer(), code="SA0901")
    from app.members.staff_mode import bind, issue_invite

    bind(db.session.get(WechatIdentity, _identity_id("o-advisor")), issue_invite(advisor, actor="test")[0])
    assert staff.post("/api/v1/staff/scans", json={"code": code}).status_code == 404
    row = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "member.read"))
    assert (row.actor_id, row.subject_id, row.details) == ("SA0901", str(member.id), {"refused": True})


def _identity_id(openid: str) -> int:
    return db.session.scalar(sa.select(WechatIdentity.id).where(WechatIdentity.openid == openid))


def test_subscription_grants_count_one_send_per_accept_and_a_resent_result_once(mini, member):
    from app.care.subscriptions import use_grant

    def send(request_id: str, results: dict[str, str]) -> object:
        return mini.post("/api/v1/me/subscriptions", json={"request_id": request_id, "results": results})

    send("req-00000001", {"tpl-expiry": "accept", "tpl-booking": "reject"})
    send("req-00000002", {"tpl-expiry": "accept"})
    grants = send("req-00000002", {"tpl-expiry": "accept"}).json  # the mini-app retried after a timeout
    assert {g["template_id"]: g["available"] for g in grants} == {"tpl-booking": 0, "tpl-expiry": 2}
    assert use_grant(member.id, "tpl-expiry") and use_grant(member.id, "tpl-expiry")
    assert not use_grant(member.id, "tpl-expiry")
    assert send("req-00000003", {"tpl": "maybe"}).status_code == 422
    too_many = send("req-00000004", {f"tpl-{i}": "accept" for i in range(4)})
    assert too_many.status_code == 422 and "results" in too_many.json["error"]["fields"]
    missing_id = mini.post("/api/v1/me/subscriptions", json={"results": {"tpl-expiry": "accept"}})
    assert "request_id" in missing_id.json["error"]["fields"]


def test_members_only_endpoints_need_membership(mini, app_ctx):
    mini.sign_in("o-visitor")
    for url in ("/api/v1/me/points", "/api/v1/me/profile", "/api/v1/me/member-code", "/api/v1/me/vehicles"):
        response = mini.get(url)
        assert response.status_code == 403 and response.json["error"]["code"] == "not_a_member"


# --- dealers and staff mode ------------------------------------------------------------------


def test_dealers_list_filters_and_nearest(client, shop):
    factories.dealer(code="D0201", city="北京", region="north", latitude=39.99, longitude=116.47)
    listed = client.get("/api/v1/dealers?city=长春").json
    assert [d["code"] for d in listed["items"]] == ["D0101"] and listed["total"] == 1
    assert client.get("/api/v1/dealers?per_page=1&page=2").json["items"][0]["code"] == "D0201"
    nearest = client.get("/api/v1/dealers/nearest?latitude=39.9&longitude=116.4&limit=2").json
    assert [d["code"] for d in nearest] == ["D0201", "D0101"] and nearest[0]["distance_km"] < 20
    assert client.get("/api/v1/dealers/nearest?latitude=91&longitude=0").status_code == 422


def test_staff_mode_invite_qr_and_figures(client, wechat, shop, http_mock):
    import responses

    http_mock.add(
        responses.POST,
        "https://api.weixin.qq.com/cgi-bin/qrcode/create",
        json={"ticket": "T", "expire_seconds": 2592000, "url": "http://weixin.qq.com/q/adv"},
    )
    _manager, token = factories.operator("dealer_manager", dealer_id=shop.id)
    invite = client.post("/api/v1/cs/staff/SA0101/invites", headers={"Authorization": f"Bearer {token}"}).json
    advisor = MiniClient(client, wechat)
    advisor.sign_in("o-wanglei")
    assert advisor.get("/api/v1/staff/me").status_code == 403
    bound = advisor.post("/api/v1/staff/binding", json={"invite_code": invite["invite_code"].lower()})
    assert bound.status_code == 201 and bound.json["dealer_code"] == "D0101"
    again = advisor.post("/api/v1/staff/binding", json={"invite_code": invite["invite_code"]})
    assert again.status_code == 422
    assert advisor.get("/api/v1/staff/me/enrollment-qr").json["scene"] == "adv:SA0101"
    staff_row = db.session.scalar(sa.select(factories.Staff).where(factories.Staff.staff_code == "SA0101"))
    now = dt.datetime.now(dt.UTC)
    for activated in (True, True, False):
        factories.member(
            enrolling_staff_id=staff_row.id, enrolled_at=now, status="active" if activated else "pre_enrolled"
        )
    staff_row.monthly_enrollment_target = 10
    db.session.flush()
    figures = advisor.get("/api/v1/staff/me/enrollments").json
    assert (figures["enrolled"], figures["activated_within_30_days"], figures["activation_rate"]) == (3, 2, 0.6667)
    assert figures["target_progress"] == 0.3
    assert me_is_staff(advisor)


def me_is_staff(advisor: MiniClient) -> bool:
    return advisor.get("/api/v1/me").json["is_staff"]


# --- the edge: hostile input and a partner that is down ------------------------------------


def test_nul_characters_are_refused_field_by_field(mini, member):
    response = mini.patch("/api/v1/me/profile", json={"name": "张\x00三", "city": "长春"})
    assert response.status_code == 422
    assert response.json["error"]["fields"] == {"name": ["包含不允许的字符。"]}
    assert mini.get("/api/v1/me/points/history?kind=%00").status_code == 422
    assert mini.delete("/api/v1/me/vehicles/LFV%00").status_code == 422
    assert db.session.get(Member, member.id).name != "张\x00三"
