"""Security and privacy hardening: consent order, identifiers, bearer tokens, encryption at rest,
audit references, erasure, location, dealer access, key rotation."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from stdnum import luhn

from app.campaigns.models import QrCode
from app.core import tunables
from app.core.audit import AuditEntry
from app.core.clock import utcnow
from app.core.db import db
from app.core.inbox import InboundEvent
from app.core.security import cipher
from app.jobs import drain, schedule
from app.members import cards, identities, privacy, qr_enrollment, services, vehicle_claims
from app.members.identifiers import is_member_number, new_member_number, normalize_cn_mobile
from app.members.models import Consent, EnrollmentToken, Ownership, VehicleClaim, WechatIdentity
from app.points import earning
from app.sync import replay
from app.sync.samples import sample_delivery
from app.wechat import clients
from tests import dms_events, factories
from tests.conftest import WECHAT
from tests.miniapp_helpers import FakeMiniappWeChat, MiniClient
from tests.wechat_helpers import APP_ID, Callback, event_xml, text_xml


@pytest.fixture
def shop(app_ctx):
    dealer = factories.dealer(code="D0101", city="长春")
    advisor = factories.staff(dealer, code="SA0101")
    return dealer, advisor


@pytest.fixture
def mini_member(client, fakes, app, http_mock, app_ctx):
    clients.forget_clients(app)
    wechat = FakeMiniappWeChat(fakes.mini_app)
    mini = MiniClient(client, wechat)
    mini.sign_in("o-mini-1")
    assert mini.register("13911112222").status_code == 201
    return mini, services.find_by_phone("13911112222"), wechat


def delivery(phone: str = "13800138000", **payload_overrides: Any) -> dict[str, Any]:
    document = sample_delivery(phone=phone)
    document["payload"].update(payload_overrides)
    return document


def _consent_field_errors(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.json
    return response.json["error"]["fields"]["payload"]["buyer"]["consent"]


# --- 1. consent cannot be outdated ----------------------------------------------------------


def test_a_consent_accepted_in_the_future_is_refused_at_intake(shop, post_dms):
    document = delivery()
    document["payload"]["buyer"]["consent"]["accepted_at"] = "2099-01-01T00:00:00+08:00"
    errors = _consent_field_errors(post_dms(document))
    assert list(errors) == ["accepted_at"]
    assert services.find_by_phone("13800138000") is None


def test_a_consent_stated_within_the_clock_window_is_accepted(shop, post_dms):
    document = delivery()
    document["payload"]["buyer"]["consent"]["accepted_at"] = (utcnow() + dt.timedelta(seconds=60)).isoformat()
    assert post_dms(document).status_code == 202


def test_only_known_privacy_policy_versions_are_accepted_from_the_dms(shop, post_dms):
    document = delivery()
    document["payload"]["buyer"]["consent"]["policy_version"] = "1999.9"
    assert list(_consent_field_errors(post_dms(document))) == ["policy_version"]
    # an operator lists the versions the dealers may still present; the current one is always known
    tunables.set_value("privacy.policy_versions", ["2025.3", "2026.1"], actor=("test", "t"))
    db.session.flush()
    document = delivery(phone="13800138001")
    document["payload"]["buyer"]["consent"]["policy_version"] = "2025.3"
    assert post_dms(document).status_code == 202
    tunables.set_value("privacy.policy_version", "2026.2", actor=("test", "t"))
    db.session.flush()
    document = delivery(phone="13800138002")
    document["payload"]["buyer"]["consent"]["policy_version"] = "2026.2"
    assert post_dms(document).status_code == 202


def test_the_current_consent_is_the_last_recorded_not_the_latest_stated(app_ctx):
    member = factories.member()
    # a decision *stated* far in the future (whatever let it through) ...
    services.record_consent(
        member, policy_version="2026.1", granted=["marketing"], channel="dms", at=utcnow().replace(year=2099)
    )
    db.session.flush()
    assert services.consent_state(member).purposes["marketing"] is True
    # ... is outranked by the member's later withdrawal
    privacy.set_purposes(member, set())
    assert services.consent_state(member).purposes == {
        "privacy_policy": True,
        "service_notifications": False,
        "marketing": False,
        "dealer_sharing": False,
    }
    rows = db.session.scalars(sa.select(Consent).where(Consent.member_id == member.id).order_by(Consent.id)).all()
    stated = [r for r in rows if r.stated_at is not None]
    assert stated and stated[0].stated_at.year == 2099 and stated[0].recorded_at.year < 2099


def test_a_dms_consent_stated_before_the_members_withdrawal_does_not_regrant(shop, post_dms, app_ctx):
    member = factories.member(phone="13800138000")
    privacy.set_purposes(member, set())
    db.session.flush()
    document = delivery()
    document["payload"]["buyer"]["consent"]["accepted_at"] = (utcnow() - dt.timedelta(hours=1)).isoformat()
    assert post_dms(document).status_code == 202
    assert services.consent_state(member).purposes["service_notifications"] is False


# --- 2. member numbers vs phones ------------------------------------------------------------


def _mobiles(*, luhn_valid: bool, count: int = 3) -> list[str]:
    found = []
    for n in range(10_000):
        candidate = f"1391234{n:04d}"
        if luhn.is_valid(candidate) == luhn_valid:
            found.append(candidate)
        if len(found) == count:
            return found
    raise AssertionError("no candidates")


def test_new_member_numbers_can_never_be_mobile_numbers():
    for _ in range(500):
        number = new_member_number()
        assert is_member_number(number)
        assert normalize_cn_mobile(number) is None
        assert number[0] == "9"


@pytest.mark.parametrize("luhn_valid", [True, False])
def test_members_are_found_by_phone_whether_or_not_it_passes_the_luhn_check(app_ctx, luhn_valid):
    for phone in _mobiles(luhn_valid=luhn_valid):
        member = factories.member(phone=phone)
        assert services.find_member(phone) == member
        assert services.find_member(f"+86 {phone[:3]} {phone[3:7]} {phone[7:]}") == member
        assert services.find_member(member.member_no) == member


def test_legacy_member_numbers_keep_resolving(app_ctx):
    # numbers minted before the change: 11 Luhn-valid digits, some shaped like a mobile number
    legacy_mobile_shaped, legacy_other = (
        _mobiles(luhn_valid=True, count=2)[1],
        "3820194756" + luhn.calc_check_digit("3820194756"),
    )
    first = factories.member()
    first.member_no = legacy_mobile_shaped
    second = factories.member()
    second.member_no = legacy_other
    db.session.flush()
    assert services.find_member(legacy_mobile_shaped) == first  # no member has it as a phone
    assert services.find_member(legacy_other) == second
    # a phone that matches a member wins over a legacy number shaped like it
    holder = factories.member(phone=legacy_mobile_shaped)
    assert services.find_member(legacy_mobile_shaped) == holder
    assert services.find_member("19999999999") is None


# --- 3. order enrollment tokens are stored hashed -------------------------------------------


def _follower(openid: str) -> WechatIdentity:
    identity = WechatIdentity(app_kind="official", app_id=WECHAT["WECHAT_APP_ID"], openid=openid, following=True)
    db.session.add(identity)
    db.session.flush()
    return identity


def _all_text(*models: Any) -> str:
    """Every value of every row of these tables, as one string (to prove a secret is not kept)."""
    text = []
    for model in models:
        for row in db.session.execute(sa.select(model.__table__)).all():
            text.extend(str(value) for value in row)
    return "\n".join(text)


def test_order_tokens_are_stored_hashed_and_shown_by_issuing_a_fresh_code(client, shop, post_dms):
    dealer, _advisor = shop
    _manager, bearer = factories.operator("dealer_manager", dealer_id=dealer.id)
    assert post_dms(delivery(phone="13800000031")).status_code == 202
    buyer = services.find_by_phone("13800000031")
    row = db.session.scalar(sa.select(EnrollmentToken).where(EnrollmentToken.member_id == buyer.id))
    assert not hasattr(row, "token") and len(row.token_hash) == 64

    url = f"/api/v1/cs/members/{buyer.member_no}/enrollment-qr"
    show = {"json": {"reason": "交车"}, "headers": {"Authorization": f"Bearer {bearer}"}}
    first = client.post(url, **show).json["scene"].removeprefix("order:")
    second = client.post(url, **show).json["scene"].removeprefix("order:")
    assert first != second
    db.session.refresh(row)
    assert row.token_hash == hashlib.sha256(second.encode()).hexdigest()
    # neither secret is kept anywhere: tokens, QR codes, the inbox's outcomes, the audit log
    stored = _all_text(EnrollmentToken, QrCode, InboundEvent, AuditEntry)
    assert first not in stored and second not in stored

    assert qr_enrollment.activate_by_order_token(first, _follower("o-1"), utcnow()).outcome == "expired"
    assert qr_enrollment.activate_by_order_token(second, _follower("o-2"), utcnow()).outcome == "activated"
    assert client.post(url, **show).status_code == 404


def test_the_member_card_does_not_show_the_order_token(shop, post_dms):
    assert post_dms(delivery(phone="13800000032")).status_code == 202
    card = cards.member_card(services.find_by_phone("13800000032"), reveal=True)
    assert "order_enrollment_token" not in card
    assert card["order_enrollment_open"] is True


# --- 4. personal fields encrypted at rest ---------------------------------------------------


def _raw(sql: str, **params: Any) -> Any:
    return db.session.execute(sa.text(sql), params).one()


def test_name_birthday_vin_plate_and_location_are_encrypted_at_rest(app_ctx):
    member = factories.member(name="张三丰", birthday=dt.date(1990, 5, 17))
    car = factories.vehicle(owner=member, plate="吉A12345")
    claim_vin = factories.vin()
    privacy_claim = vehicle_claims.bind(member, claim_vin, plate="吉b 54321")
    identity = _follower("o-located")
    identity.member_id = member.id
    identities.record_location(identity, 43.8868, 125.3245, utcnow())
    db.session.flush()

    name, birthday = _raw("SELECT name, CAST(birthday AS text) FROM members WHERE id = :id", id=member.id)
    vin, plate = _raw("SELECT vin, plate FROM vehicles WHERE id = :id", id=car.id)
    claimed_vin, claimed_plate = _raw("SELECT vin, plate FROM vehicle_claims WHERE id = :id", id=privacy_claim.claim.id)
    lat, lon = _raw(
        "SELECT CAST(latitude AS text), CAST(longitude AS text) FROM wechat_identities WHERE id = :id", id=identity.id
    )
    stored = [name, birthday, vin, plate, claimed_vin, claimed_plate, lat, lon]
    for plaintext in ("张三丰", "1990-05-17", car.vin, "吉A12345", claim_vin, "吉B54321", "43.8868", "125.3245"):
        assert not any(plaintext in value for value in stored), plaintext
    assert cipher().decrypt(name) == "张三丰" and cipher().decrypt(vin) == car.vin

    db.session.expire_all()
    assert (member.name, member.birthday, car.plate) == ("张三丰", dt.date(1990, 5, 17), "吉A12345")
    assert (identity.latitude, identity.longitude) == (43.8868, 125.3245)
    assert services.vehicle_by_vin(car.vin.lower()) == car


def test_a_vin_stays_unique_through_its_blind_index(app_ctx):
    car = factories.vehicle()
    with pytest.raises(IntegrityError), db.session.begin_nested():
        factories.vehicle(vin=car.vin)


def test_the_birthday_multiplier_still_reads_the_encrypted_birthday(app_ctx):
    member = factories.member(birthday=dt.date(1990, 5, 17))
    db.session.expire_all()
    facts = earning.member_facts(member, "service.completed", {}, utcnow(), None)
    assert facts.birthday == dt.date(1990, 5, 17)


def test_inbox_outcomes_name_no_vin(shop, post_dms):
    document = delivery(phone="13800000033")
    assert post_dms(document).status_code == 202
    vin = document["payload"]["vin"]
    unknown = factories.vin()
    assert post_dms(dms_events.service(unknown, parts_fen=100, labour_fen=100)).status_code == 202
    assert post_dms(dms_events.service(vin, parts_fen=100, labour_fen=100)).status_code == 202
    outcomes = "\n".join(db.session.scalars(sa.select(InboundEvent.outcome)))
    assert vin not in outcomes and unknown not in outcomes


# --- 5. audit details carry references, not personal data -----------------------------------


def test_audit_details_name_rows_not_vins_openids_or_phones(shop, post_dms, app_ctx):
    document = delivery(phone="13800000041")
    assert post_dms(document).status_code == 202
    buyer = services.find_by_phone("13800000041")
    delivered_vin = document["payload"]["vin"]
    identity = _follower("o-audited")
    secret = services.issue_order_secret(services.open_enrollment_token(buyer))
    assert qr_enrollment.activate_by_order_token(secret, identity, utcnow()).outcome == "activated"

    claimed_vin = factories.vin()
    claim = vehicle_claims.bind(buyer, claimed_vin, plate="吉A99999").claim
    vehicle_claims.decide(
        claim.id,
        approve=True,
        decider=vehicle_claims.Decider("sup1", "supervisor", None),
        vehicle_details={"model_code": "M", "model_name": "迈腾"},
        note=None,
    )
    other = factories.member(phone="13800000042")
    owned = factories.vehicle(owner=other)
    resale = vehicle_claims.bind(buyer, owned.vin).claim
    vehicle_claims.decide(
        resale.id,
        approve=True,
        decider=vehicle_claims.Decider("sup1", "supervisor", None),
        vehicle_details={},
        note=None,
    )
    vehicle_claims.unbind(buyer, delivered_vin)
    db.session.flush()

    details = [str(d) for d in db.session.scalars(sa.select(AuditEntry.details).where(AuditEntry.details.is_not(None)))]
    assert details
    for secret_value in (delivered_vin, claimed_vin, owned.vin, "o-audited", "0041", "吉A99999"):
        assert not any(secret_value in d for d in details), secret_value
    ended = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "vehicle.ownership_ended"))
    assert ended.details["vehicle"] == owned.id


def test_a_phone_change_is_audited_without_the_numbers(mini_member):
    mini, _member, wechat = mini_member
    response = mini.put("/api/v1/me/phone", json={"phone_code": wechat.phone_code("new-phone", "13977776666")})
    assert response.status_code == 200, response.json
    audit = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "member.phone_changed"))
    assert "6666" not in str(audit.details) and "2222" not in str(audit.details)


# --- 6. withdrawal erases what it says; raw bodies have a retention -------------------------


def test_withdrawal_erases_plates_car_links_claims_and_the_raw_bodies(shop, post_dms):
    first = delivery(phone="13800000051", plate="吉A11111")
    sold = delivery(phone="13800000051", plate="吉A22222")
    assert post_dms(first).status_code == 202 and post_dms(sold).status_code == 202
    resale = delivery(phone="13800000052", vin=sold["payload"]["vin"])
    assert post_dms(resale).status_code == 202  # the second car now belongs to someone else
    member = services.find_by_phone("13800000051")
    vehicle_claims.bind(member, factories.vin(), plate="吉A33333")
    kept_car = services.vehicle_by_vin(first["payload"]["vin"])
    assert len(db.session.scalars(sa.select(Ownership).where(Ownership.member_id == member.id)).all()) == 2

    privacy.withdraw_everything(member)
    db.session.expire_all()

    assert db.session.scalars(sa.select(Ownership).where(Ownership.member_id == member.id)).all() == []
    assert db.session.scalars(sa.select(VehicleClaim).where(VehicleClaim.member_id == member.id)).all() == []
    assert (kept_car.plate, kept_car.plate_index) == (None, None)
    assert services.vehicle_by_vin(sold["payload"]["vin"]).plate == "吉A22222"  # the new owner's car keeps it
    tokens = db.session.scalars(sa.select(EnrollmentToken).where(EnrollmentToken.member_id == member.id)).all()
    assert all(t.vehicle_id is None for t in tokens)
    bodies = dict(
        db.session.execute(
            sa.select(InboundEvent.external_id, InboundEvent.body_sha256).where(InboundEvent.body.is_(None))
        ).all()
    )
    assert set(bodies) == {first["event_id"], sold["event_id"]}  # the buyer's own deliveries
    assert all(len(digest) == 64 for digest in bodies.values())
    assert db.session.scalar(
        sa.select(InboundEvent.body.is_not(None)).where(InboundEvent.external_id == resale["event_id"])
    )


def test_processed_raw_bodies_are_purged_after_the_retention_keeping_a_hash(shop, post_dms):
    old, recent = delivery(phone="13800000061"), delivery(phone="13800000062")
    assert post_dms(old).status_code == 202 and post_dms(recent).status_code == 202
    old_row = db.session.scalar(sa.select(InboundEvent).where(InboundEvent.external_id == old["event_id"]))
    raw = old_row.body
    old_row.processed_at = utcnow() - dt.timedelta(days=31)
    db.session.flush()

    assert drain.purge_inbound_bodies() == 1
    db.session.expire_all()
    assert old_row.body is None and old_row.body_sha256 == hashlib.sha256(raw).hexdigest()
    assert old_row.status == "processed"
    recent_row = db.session.scalar(sa.select(InboundEvent).where(InboundEvent.external_id == recent["event_id"]))
    assert recent_row.body is not None and recent_row.body_sha256 is None
    assert any(entry.job.endswith("purge_inbound_bodies") for entry in schedule.entries())
    # a simulation replays what is still kept
    replayed = list(replay.earning_events(utcnow() - dt.timedelta(days=1), utcnow() + dt.timedelta(days=1)))
    assert len(replayed) == 1


# --- 7. no location before consent ----------------------------------------------------------


def _location_event(openid: str) -> str:
    return event_xml(openid, "LOCATION", Latitude=43.88, Longitude=125.28, Precision=30)


def _location_message(openid: str) -> str:
    return text_xml(openid, "x").replace(
        "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[x]]></Content>",
        "<MsgType><![CDATA[location]]></MsgType><Location_X>43.88</Location_X><Location_Y>125.28</Location_Y>"
        "<Scale>15</Scale><Label><![CDATA[here]]></Label>",
    )


def _stored_location(openid: str) -> tuple[Any, Any]:
    identity = db.session.scalar(sa.select(WechatIdentity).where(WechatIdentity.openid == openid))
    db.session.refresh(identity)
    return identity.latitude, identity.longitude


def test_a_follower_who_never_accepted_the_policy_gets_the_nearest_dealer_but_no_location_is_kept(client, app_ctx):
    wx = Callback(client)
    factories.dealer(code="D0101", name="长春金达店", latitude=43.8868, longitude=125.2773)
    prospect = services.create_member(channel="advisor_qr", status="active")  # a QR prospect: no consent yet
    db.session.add(WechatIdentity(app_kind="official", app_id=APP_ID, openid="o-prospect", member_id=prospect.id))
    db.session.add(WechatIdentity(app_kind="official", app_id=APP_ID, openid="o-stranger"))
    db.session.flush()
    for openid in ("o-prospect", "o-stranger"):
        assert wx.reply(_location_event(openid)) == {}
        assert "长春金达店" in wx.reply(_location_message(openid))["Content"]
        assert _stored_location(openid) == (None, None)


def test_a_consented_members_location_is_kept(client, app_ctx):
    wx = Callback(client)
    member = factories.member()
    db.session.add(WechatIdentity(app_kind="official", app_id=APP_ID, openid="o-consented", member_id=member.id))
    db.session.flush()
    wx.reply(_location_event("o-consented"))
    assert _stored_location("o-consented") == (43.88, 125.28)
