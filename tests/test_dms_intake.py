"""DMS intake and enrollment on purchase (SPEC §2, §11)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from typing import Any

import pytest
import sqlalchemy as sa

from app.core import inbox
from app.core.audit import AuditEntry
from app.core.clock import utcnow
from app.core.db import db
from app.members import enrollment, services
from app.members.models import Consent, EnrollmentToken, Member, Ownership, Vehicle
from app.sync.samples import sample_delivery
from tests import factories


@pytest.fixture
def shop(app_ctx):
    dealer = factories.dealer(code="D0101", city="长春")
    advisor = factories.staff(dealer, code="SA0101")
    return dealer, advisor


def delivery(phone: str = "13800138000", **payload_overrides: Any) -> dict[str, Any]:
    document = sample_delivery(phone=phone)
    document["payload"].update(payload_overrides)
    return document


def count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_delivery_enrolls_the_buyer_as_pre_enrolled_member_with_car_and_order_token(shop, post_dms):
    dealer, advisor = shop
    document = delivery()
    response = post_dms(document)
    assert response.status_code == 202
    assert response.json == {"status": "accepted", "event_id": document["event_id"]}

    member = services.find_by_phone("13800138000")
    assert member is not None
    assert member.status == "pre_enrolled"
    assert member.enrollment_channel == "purchase"
    assert (member.enrolling_dealer_id, member.enrolling_staff_id) == (dealer.id, advisor.id)
    assert member.attribution_until == member.enrolled_at + dt.timedelta(days=90)
    assert member.name == "周杰"
    [ownership] = member.ownerships
    assert ownership.vehicle.vin == document["payload"]["vin"]
    assert ownership.vehicle.price_fen == 21_990_000
    assert (ownership.role, ownership.ended_on, ownership.credited_staff_id) == ("owner", None, advisor.id)
    token = db.session.scalar(sa.select(EnrollmentToken).where(EnrollmentToken.member_id == member.id))
    assert token.vehicle_id == ownership.vehicle_id and token.used_at is None
    assert token.expires_at - token.created_at == dt.timedelta(days=30)
    consent = services.consent_state(member)
    assert consent.policy_version == "2026.1"
    assert consent.purposes == {"privacy_policy": True, "service_notifications": True, "dealer_sharing": True}

    event = db.session.scalar(sa.select(inbox.InboundEvent))
    assert (event.status, event.attempts, event.type) == ("processed", 1, "vehicle.delivered")
    assert member.member_no in event.outcome
    assert db.session.scalar(sa.select(AuditEntry.action).where(AuditEntry.subject_id == str(member.id))) == (
        "member.enrolled_on_purchase"
    )


def test_a_resent_event_is_acknowledged_and_ignored(shop, post_dms):
    document = delivery()
    assert post_dms(document).status_code == 202
    again = post_dms(document)
    assert again.status_code == 200
    assert again.json["status"] == "duplicate"
    assert (count(Member), count(Ownership), count(inbox.InboundEvent)) == (1, 1, 1)


def test_the_raw_event_is_stored_encrypted(shop, post_dms):
    post_dms(delivery(phone="13812340000"))
    raw = db.session.execute(sa.text("SELECT body FROM inbound_events")).scalar_one()
    assert b"13812340000" not in bytes(raw)
    assert b"13812340000" in db.session.scalar(sa.select(inbox.InboundEvent.body))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"secret": "wrong"}, "signature_mismatch"),
        ({"timestamp": 1_000_000_000}, "stale_timestamp"),
        ({"sign": False}, "missing_headers"),
    ],
)
def test_bad_signatures_get_401_and_nothing_is_stored(shop, post_dms, change, reason):
    response = post_dms(delivery(), **change)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "bad_signature"
    assert response.json["error"]["details"] == {"reason": reason}
    assert count(inbox.InboundEvent) == 0


def test_a_signature_with_non_ascii_characters_is_refused_not_a_500(shop, client):
    document = json.dumps(delivery()).encode()
    headers = {"X-Timestamp": str(int(time.time())), "X-Signature": "sha256=éé", "Content-Type": "application/json"}
    response = client.post("/api/v1/dms/events", data=document, headers=headers)
    assert response.status_code == 401 and response.json["error"]["details"] == {"reason": "signature_mismatch"}
    assert count(inbox.InboundEvent) == 0


def test_a_signature_over_a_different_body_is_refused(shop, post_dms, client):
    from app.core.security import sign_timestamped
    from tests.conftest import DMS_SECRET

    headers = sign_timestamped(DMS_SECRET, b'{"event_id":"x"}')
    response = client.post("/api/v1/dms/events", data=b'{"event_id":"y"}', headers=headers)
    assert response.status_code == 401


def test_invalid_payload_gets_field_errors_and_nothing_is_written(shop, post_dms):
    document = delivery(vin="LFV2A21K9D300000", price_fen="12.5")
    document["payload"]["buyer"]["phone"] = "12345"
    del document["payload"]["buyer"]["consent"]
    response = post_dms(document, headers={"Accept-Language": "en"})
    assert response.status_code == 422
    error = response.json["error"]
    assert error["code"] == "validation_failed"
    assert error["message"] == "Some fields are invalid."
    payload_errors = error["fields"]["payload"]
    assert payload_errors["vin"] == ["A VIN has exactly 17 characters."]
    assert payload_errors["price_fen"] == ["Not a valid integer."]
    assert payload_errors["buyer"]["phone"] == ["Not a valid mainland China mobile number."]
    assert payload_errors["buyer"]["consent"] == ["Missing data for required field."]
    assert (count(inbox.InboundEvent), count(Member), count(Vehicle)) == (0, 0, 0)


def test_errors_are_in_chinese_by_default(shop, post_dms):
    document = delivery()
    document["payload"]["vin"] = "LFV2A21K9D3000001"  # wrong check digit
    response = post_dms(document)
    assert response.status_code == 422
    assert response.json["error"]["message"] == "部分字段填写有误。"
    assert response.json["error"]["fields"]["payload"]["vin"] == ["车架号校验位（第 9 位）不正确。"]


@pytest.mark.parametrize(
    ("mutate", "field_path"),
    [
        (lambda d: d.update(dealer_code="NOPE"), ["dealer_code"]),
        (lambda d: d.update(type="vehicle.exploded"), ["type"]),
        (lambda d: d.update(occurred_at="2026-11-23T10:00:00"), ["occurred_at"]),  # no timezone
        # dates the program cannot compute with (they overflowed time-zone arithmetic in the drain)
        (lambda d: d.update(occurred_at="0001-01-01T00:00:00+08:00"), ["occurred_at"]),
        (lambda d: d["payload"].update(delivered_on="9999-12-31"), ["payload", "delivered_on"]),
        (lambda d: d["payload"]["buyer"].update(birthday="0001-01-01"), ["payload", "buyer", "birthday"]),
        (lambda d: d["payload"].update(surprise=1), ["payload", "surprise"]),
        (lambda d: d.pop("event_id"), ["event_id"]),
        (
            lambda d: d["payload"]["buyer"].update(customer_type="alien"),
            ["payload", "buyer", "customer_type"],
        ),
    ],
)
def test_each_bad_field_is_named(shop, post_dms, mutate, field_path):
    document = copy.deepcopy(delivery())
    mutate(document)
    response = post_dms(document)
    assert response.status_code == 422
    node = response.json["error"]["fields"]
    for key in field_path:
        node = node[key]
    assert node and all(isinstance(message, str) for message in node)
    assert count(inbox.InboundEvent) == 0


def test_a_body_that_is_not_json_gets_422(shop, post_dms):
    response = post_dms(b"<xml/>")
    assert response.status_code == 422
    assert response.json["error"]["fields"] == {"body": ["请求体不是有效的 JSON。"]}
    assert post_dms(b"[1, 2]").json["error"]["fields"] == {"body": ["请求体必须是 JSON 对象。"]}


def test_an_oversized_body_is_refused(shop, post_dms, app):
    response = post_dms(b"{" + b" " * app.config["MAX_CONTENT_LENGTH"] + b"}")
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"


def test_a_known_phone_links_the_car_to_the_existing_member_without_a_token(shop, post_dms):
    member = factories.member(status="active", phone="13800138000", name="老会员")
    db.session.flush()
    assert post_dms(delivery()).status_code == 202
    assert count(Member) == 1
    db.session.expire_all()
    assert [v.vin for v in member.current_vehicles] == [db.session.scalar(sa.select(Vehicle.vin))]
    assert member.name == "老会员"  # the DMS fills blanks, never overwrites
    assert count(EnrollmentToken) == 0
    assert db.session.scalar(sa.select(inbox.InboundEvent.outcome)).startswith(f"member {member.member_no} matched")


def test_an_imported_owner_without_phone_is_matched_by_vin(shop, post_dms):
    imported = factories.member(status="active", channel="import", phone=None)
    car = factories.vehicle(owner=imported)
    assert post_dms(delivery(phone="13800138555", vin=car.vin)).status_code == 202
    db.session.expire_all()
    assert count(Member) == 1
    assert imported.phone == "13800138555"
    assert [o.vehicle_id for o in imported.ownerships if o.ended_on is None] == [car.id]


def test_a_resale_ends_the_previous_ownership(shop, post_dms):
    seller = factories.member(status="active", phone="13900001111")
    car = factories.vehicle(owner=seller)
    assert post_dms(delivery(phone="13800138000", vin=car.vin)).status_code == 202
    db.session.expire_all()
    buyer = services.find_by_phone("13800138000")
    assert buyer is not None and buyer.id != seller.id
    [old] = seller.ownerships
    assert (old.ended_on, old.end_reason) == (
        dt.date.fromisoformat(delivery()["payload"]["delivered_on"]),
        "resale",
    )
    assert [o.vehicle_id for o in buyer.ownerships if o.ended_on is None] == [car.id]


@pytest.mark.parametrize(("days_ago", "credited"), [(30, "enrolling"), (120, "selling")])
def test_the_protection_period_keeps_the_credit_with_the_enrolling_advisor(shop, post_dms, days_ago, credited):
    dealer, selling_advisor = shop
    enrolling_advisor = factories.staff(dealer)
    enrolled_at = utcnow() - dt.timedelta(days=days_ago)
    prospect = factories.member(
        status="active",
        channel="advisor_qr",
        phone="13800138000",
        enrolling_dealer_id=dealer.id,
        enrolling_staff_id=enrolling_advisor.id,
        enrolled_at=enrolled_at,
        attribution_until=enrolled_at + dt.timedelta(days=90),
    )
    assert post_dms(delivery()).status_code == 202
    [ownership] = db.session.scalars(sa.select(Ownership).where(Ownership.member_id == prospect.id))
    expected = enrolling_advisor if credited == "enrolling" else selling_advisor
    assert ownership.credited_staff_id == expected.id


def test_an_unknown_advisor_code_still_enrolls_the_buyer_for_the_dealer(shop, post_dms):
    dealer, _advisor = shop
    assert post_dms(delivery(advisor_code="GONE42")).status_code == 202
    member = services.find_by_phone("13800138000")
    assert (member.enrolling_dealer_id, member.enrolling_staff_id) == (dealer.id, None)
    assert "unknown advisor GONE42" in db.session.scalar(sa.select(inbox.InboundEvent.outcome))


def test_a_failing_handler_leaves_nothing_half_written_and_is_retried(shop, post_dms, monkeypatch):
    def explode(*_args, **_kwargs):
        raise RuntimeError("DMS master data hiccup")

    monkeypatch.setattr(enrollment, "_upsert_vehicle", explode)
    assert post_dms(delivery()).status_code == 202  # stored; processing failed afterwards
    event = db.session.scalar(sa.select(inbox.InboundEvent))
    assert (event.status, event.attempts) == ("failed", 1)
    assert "DMS master data hiccup" in event.last_error
    assert (count(Member), count(Consent), count(Ownership)) == (0, 0, 0)  # the member insert rolled back

    monkeypatch.undo()
    from app.jobs.drain import process_inbound_event

    process_inbound_event(event.id)
    db.session.flush()
    db.session.refresh(event)
    assert (event.status, event.attempts, event.last_error) == ("processed", 2, None)
    assert count(Member) == 1


def test_an_event_gives_up_after_the_configured_attempts(shop, post_dms, monkeypatch):
    from app.core import tunables
    from app.jobs.drain import process_inbound_event

    tunables.set_value("inbox.max_attempts", 2, actor=("test", "t"))
    db.session.commit()  # a savepoint release here; the failure path rolls back to this point
    monkeypatch.setattr(enrollment, "_upsert_vehicle", lambda *a, **k: 1 / 0)
    post_dms(delivery())
    event_id = db.session.scalar(sa.select(inbox.InboundEvent.id))
    with pytest.raises(ZeroDivisionError):
        process_inbound_event(event_id)
    event = db.session.get(inbox.InboundEvent, event_id)
    db.session.refresh(event)
    assert (event.status, event.attempts) == ("dead", 2)
    assert process_inbound_event(event_id) is None  # dead events are left for an operator


def test_a_dealer_opened_after_a_refusal_is_accepted_from_the_next_event(shop, post_dms):
    document = delivery()
    document["dealer_code"] = "D0999"
    assert post_dms(document).status_code == 422
    assert count(inbox.InboundEvent) == 0
    factories.dealer(code="D0999")
    assert post_dms(document).status_code == 202  # unknown codes are never remembered


def test_a_known_dealer_code_is_read_once_per_ttl(app_ctx, monkeypatch):
    from app.dealers import services as dealers

    factories.dealer(code="D0777")
    assert dealers.dealer_code_exists("D0777")
    reads: list[object] = []
    real_scalar = db.session.scalar
    monkeypatch.setattr(db.session, "scalar", lambda *a, **k: reads.append(a) or real_scalar(*a, **k))
    assert dealers.dealer_code_exists("D0777") and reads == []
    assert not dealers.dealer_code_exists("D0778") and len(reads) == 1
    dealers._known_codes["D0777"] -= dealers.DEALER_CODE_SECONDS  # read a TTL ago
    assert dealers.dealer_code_exists("D0777") and len(reads) == 2


def test_the_webhook_opens_no_cookie_session_and_other_paths_still_do(app, shop, post_dms):
    """The signed webhook skips Flask's cookie session (``http.without_session``): it answers the
    same, sets no cookie, and every other path keeps its session."""
    from flask import session
    from flask.sessions import NullSession

    response = post_dms(delivery(), headers={"Cookie": "session=whatever"})
    assert response.status_code == 202
    assert "Set-Cookie" not in response.headers and "Vary" not in response.headers
    with app.test_request_context("/api/v1/dms/events", method="POST"):
        assert isinstance(session._get_current_object(), NullSession)
    with app.test_request_context("/console/login"):
        assert not isinstance(session._get_current_object(), NullSession)
