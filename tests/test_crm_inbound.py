"""Inbound CRM webhooks: signed, stored first, idempotent; profile last-writer-wins; consent; merges."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa

from app.config import current_settings
from app.core.clock import utcnow
from app.core.db import db
from app.core.models import InboundEvent
from app.core.security import sign_timestamped
from app.crm.models import CrmOutboxEntry
from app.crm.payloads import build_change
from app.jobs.drain import drain_inbox
from app.members import cards, profile
from app.members import services as members
from app.members.models import address_index
from tests import factories


def _post(client, document: dict[str, Any] | bytes, *, secret: str | None = None, headers=None):
    body = document if isinstance(document, bytes) else json.dumps(document, ensure_ascii=False).encode()
    signed = sign_timestamped(secret or current_settings().CRM_SECRET, body)
    return client.post(
        "/api/v1/crm/events",
        data=body,
        headers={"Content-Type": "application/json", **signed, **(headers or {})},
    )


def _event(event_id: str, type_: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": event_id, "type": type_, "occurred_at": utcnow().isoformat(), "data": data}


def _outcome(event_id: str) -> str | None:
    return db.session.scalar(sa.select(InboundEvent.outcome).where(InboundEvent.external_id == event_id))


def test_bad_signature_is_401_and_nothing_is_stored(app_ctx, client):
    response = _post(client, _event("e-1", "profile.updated", {}), secret="wrong-secret")
    assert response.status_code == 401
    assert db.session.scalar(sa.select(sa.func.count()).select_from(InboundEvent)) == 0


def test_bad_payload_is_422_with_field_errors(app_ctx, client):
    response = _post(
        client,
        _event("e-2", "consent.changed", {"member_no": "9", "purpose": "spam", "decided_at": "yesterday"}),
    )
    assert response.status_code == 422
    fields = response.json["error"]["fields"]["data"]
    assert set(fields) >= {"member_no", "purpose", "granted", "decided_at"}
    assert _post(client, b"[1]").status_code == 422
    assert _post(client, _event("e-3", "member.exploded", {})).status_code == 422


def test_an_event_is_stored_once_and_processed_once(app_ctx, client):
    member = factories.member()
    db.session.commit()
    document = _event(
        "e-4", "profile.updated", {"member_no": member.member_no, "version": utcnow().isoformat(), "city": "Wuhan"}
    )
    first, second = _post(client, document), _post(client, document)
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json["status"] == "duplicate"
    drain_inbox("crm")
    db.session.refresh(member)
    assert member.city == "Wuhan"
    assert _outcome("e-4") == "profile updated"


def test_a_profile_update_older_than_a_local_change_is_ignored(app_ctx, client):
    member = factories.member(city="Shanghai")
    before_local = utcnow() - dt.timedelta(minutes=5)
    profile.update(member, {"city": "Hangzhou"})  # the member changed it here just now
    db.session.commit()
    stale = _event(
        "e-5",
        "profile.updated",
        {"member_no": member.member_no, "version": before_local.isoformat(), "city": "Nanjing", "name": "旧名"},
    )
    assert _post(client, stale).status_code == 202
    drain_inbox("crm")
    db.session.refresh(member)
    assert (member.city, member.name) == ("Hangzhou", "测试会员")
    assert _outcome("e-5") == "ignored: older than the local change"

    newer = _event(
        "e-6",
        "profile.updated",
        {"member_no": member.member_no, "version": (utcnow() + dt.timedelta(seconds=1)).isoformat(), "city": "Xian"},
    )
    _post(client, newer)
    drain_inbox("crm")
    db.session.refresh(member)
    assert member.city == "Xian"
    # and a later local change wins over that CRM version again
    assert member.profile_updated_at is not None


def test_a_crm_profile_update_stores_the_home_address_with_its_blind_index(app_ctx, client):
    member = factories.member()
    db.session.commit()
    update = _event(
        "e-addr",
        "profile.updated",
        {"member_no": member.member_no, "version": utcnow().isoformat(), "address": "长春市绿园区西安大路1688号"},
    )
    assert _post(client, update).status_code == 202
    drain_inbox("crm")
    db.session.refresh(member)
    assert member.address == "长春市绿园区西安大路1688号"
    assert member.address_index == address_index("长春市 绿园区 西安大路 1688 号")
    assert _outcome("e-addr") == "profile updated"


def test_the_preferred_dealer_is_taken_last_writer_wins_and_carried_to_the_card_and_the_crm(app_ctx, client):
    member = factories.member()
    first, second = factories.dealer(code="D0301"), factories.dealer(code="D0302")
    db.session.commit()
    now = utcnow()

    def update(event_id: str, version: dt.datetime, **fields: Any) -> str | None:
        data = {"member_no": member.member_no, "version": version.isoformat(), **fields}
        assert _post(client, _event(event_id, "profile.updated", data)).status_code == 202
        drain_inbox("crm")
        db.session.refresh(member)
        return _outcome(event_id)

    assert update("pd-1", now, preferred_dealer="D0301") == "profile updated"
    assert member.preferred_dealer_id == first.id
    assert update("pd-2", now + dt.timedelta(minutes=1), preferred_dealer="D0302") == "profile updated"
    assert member.preferred_dealer_id == second.id
    # an update made in the CRM before the one applied is older news
    assert update("pd-3", now + dt.timedelta(seconds=30), preferred_dealer="D0301") == (
        "ignored: older than the local change"
    )
    assert member.preferred_dealer_id == second.id
    assert cards.member_card(member)["preferred_dealer"] == f"D0302 {second.name}"

    profile.update(member, {"city": "Wuhan"})  # the next change the CRM receives carries it
    db.session.commit()
    row = db.session.scalars(sa.select(CrmOutboxEntry).where(CrmOutboxEntry.member_id == member.id)).all()[-1]
    assert build_change(row).payload["profile"]["preferred_dealer"] == "D0302"
    # a null clears it (newer than the member's own change just now)
    assert update("pd-4", utcnow() + dt.timedelta(seconds=1), preferred_dealer=None) == "profile updated"
    assert member.preferred_dealer_id is None


def test_an_unknown_or_closed_preferred_dealer_is_a_recorded_outcome_not_an_error(app_ctx, client):
    member = factories.member(city="Shanghai")
    kept = factories.dealer(code="D0401")
    factories.dealer(code="D0402", active=False)
    member.preferred_dealer_id = kept.id
    db.session.commit()
    for event_id, code, why in (("pd-5", "D9999", "unknown"), ("pd-6", "D0402", "closed")):
        data = {
            "member_no": member.member_no,
            "version": utcnow().isoformat(),
            "city": "Xian",
            "preferred_dealer": code,
        }

        assert _post(client, _event(event_id, "profile.updated", data)).status_code == 202
        drain_inbox("crm")
        event = db.session.scalar(sa.select(InboundEvent).where(InboundEvent.external_id == event_id))
        assert event.outcome == f"profile updated; preferred_dealer {code} refused: {why} dealer"
        assert event.status == "processed"
        db.session.refresh(member)
        assert (member.preferred_dealer_id, member.city) == (kept.id, "Xian")  # the rest of the update applies


def test_a_call_center_withdrawal_goes_through_the_consent_service(app_ctx, client):
    member = factories.member()
    members.record_consent(member, policy_version="2026.1", granted=["marketing"], channel="miniapp")
    db.session.commit()
    document = _event(
        "e-7",
        "consent.changed",
        {"member_no": member.member_no, "purpose": "marketing", "granted": False, "decided_at": utcnow().isoformat()},
    )
    assert _post(client, document).status_code == 202
    drain_inbox("crm")
    assert members.consent_state(member).purposes["marketing"] is False
    assert _outcome("e-7") == "consent marketing withdrawn"


def test_a_crm_merge_webhook_merges_and_the_old_number_resolves(app_ctx, client):
    survivor, merged = factories.member(), factories.member()
    db.session.commit()
    document = _event("e-8", "member.merged", {"survivor": survivor.member_no, "merged": [merged.member_no]})
    assert _post(client, document).status_code == 202
    drain_inbox("crm")
    assert members.find_by_member_no(merged.member_no).id == survivor.id
    assert _outcome("e-8").startswith("merged 1 into")


def test_hq_master_data_changes_arrive_as_crm_events_and_an_older_one_is_ignored(app_ctx, client):
    from app.dealers.models import Dealer, Staff

    opened = utcnow() - dt.timedelta(hours=1)
    dealer = {"code": "D0901", "name": "哈尔滨新店", "region": "north", "city": "哈尔滨", "version": opened.isoformat()}
    advisor = {"staff_code": "SA0901", "dealer_code": "D0901", "name": "李娜", "role": "sales_advisor"}
    _post(client, _event("m-1", "dealer.changed", dealer))
    _post(client, _event("m-2", "staff.changed", {**advisor, "version": opened.isoformat()}))
    drain_inbox("crm")
    assert (_outcome("m-1"), _outcome("m-2")) == ("dealer created", "staff created")

    left = {**advisor, "status": "left", "left_on": "2026-12-01", "version": utcnow().isoformat()}
    stale = {**advisor, "name": "旧名", "version": (opened - dt.timedelta(days=1)).isoformat()}
    _post(client, _event("m-3", "staff.changed", left))
    _post(client, _event("m-4", "staff.changed", stale))
    drain_inbox("crm")
    staff = db.session.scalar(sa.select(Staff).where(Staff.staff_code == "SA0901"))
    assert (staff.active, staff.name) == (False, "李娜")
    assert _outcome("m-4") == "staff stale"
    assert db.session.scalar(sa.select(Dealer.active).where(Dealer.code == "D0901")) is True


def test_a_master_record_hq_must_fix_is_kept_as_the_outcome_not_retried(app_ctx, client):
    unknown_dealer = {
        "staff_code": "SA0902",
        "dealer_code": "D9999",
        "name": "王强",
        "role": "sales_advisor",
        "version": utcnow().isoformat(),
    }
    _post(client, _event("m-5", "staff.changed", unknown_dealer))
    drain_inbox("crm")
    assert _outcome("m-5") == "staff refused: dealer_code: unknown_dealer"
    bad = _post(client, _event("m-6", "dealer.changed", {"code": "D0902", "version": "yesterday"}))
    assert bad.status_code == 422
    assert set(bad.json["error"]["fields"]["data"]) >= {"name", "region", "city", "version"}
