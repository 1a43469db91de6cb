"""SMS delivery receipts: Aliyun's SmsReport HTTP push (recorded shape), secret in the address,
stored raw first, idempotent, applied to the notification by its BizId; early and unknown reports."""

from __future__ import annotations

import json

import pytest
import responses
import sqlalchemy as sa

from app import gateways
from app.care import channels, notify, operations, sms_reports
from app.care.models import Notification
from app.config import current_settings
from app.core import tunables
from app.core.clock import utcnow
from app.core.db import db
from app.core.models import InboundEvent
from app.gateways.aliyun_sms import AliyunSms
from app.jobs.drain import drain_inbox
from tests import factories
from tests.care_helpers import at_daytime
from tests.test_care_sending import fresh, member_on, planned

SMS_API = "https://dysmsapi.aliyuncs.com"


@pytest.fixture(autouse=True)
def daytime():
    with at_daytime():
        yield


def report(biz_id: str, out_id: object, *, success: bool = True, code: str = "DELIVERED", msg: str = "用户接收成功"):
    """One report as Aliyun's "SmsReport (HTTP 批量推送)" page shows it."""
    return {
        "phone_number": "1381111****",
        "send_time": "2026-12-02 10:00:00",
        "report_time": "2026-12-02 10:00:05",
        "success": success,
        "err_code": code,
        "err_msg": msg,
        "sms_size": "1",
        "biz_id": biz_id,
        "out_id": str(out_id),
    }


def push(client, reports: list[dict] | bytes, *, secret: str | None = None, **headers):
    body = reports if isinstance(reports, bytes) else json.dumps(reports, ensure_ascii=False).encode()
    return client.post(
        f"/api/v1/sms/reports/{secret or current_settings().SMS_REPORT_SECRET}",
        data=body,
        headers={"Content-Type": "application/json", **headers},
    )


def sent_by_sms(member) -> Notification:
    """A due reminder the dispatcher sends by SMS (the member has no mini-app and does not follow)."""
    row = planned(member)
    db.session.commit()
    assert notify.send_due() == 1
    row = fresh(row)
    assert (row.status, row.channel) == ("sent", "sms") and row.sms_message_id
    return row


def stored_reports() -> list[InboundEvent]:
    return db.session.scalars(sa.select(InboundEvent).where(InboundEvent.source == sms_reports.SOURCE)).all()


def test_a_delivery_and_a_failure_are_recorded_on_their_notifications(app_ctx, client, fakes):
    delivered, failed = sent_by_sms(member_on(follows=False)), sent_by_sms(member_on(follows=False))
    body = [
        report(delivered.sms_message_id, delivered.id),
        report(failed.sms_message_id, failed.id, success=False, code="MK:0001", msg="用户关机"),
    ]
    response = push(client, body)
    assert response.status_code == 200 and response.json == {"code": 0, "msg": "接收成功"}
    (event,) = stored_reports()
    assert json.loads(event.body) == body  # the raw push, kept
    drain_inbox(sms_reports.SOURCE)
    db.session.expire_all()
    assert (fresh(delivered).status, fresh(delivered).delivery_status) == ("delivered", "DELIVERED")
    assert (fresh(failed).status, fresh(failed).delivery_status) == ("failed", "MK:0001")
    assert fresh(failed).error == "SMS not delivered: MK:0001 用户关机"
    assert db.session.get(InboundEvent, event.id).outcome == "delivered 1, failed 1"
    rates = {(r.kind, r.channel): r for r in operations.delivery_rates(utcnow().replace(hour=0, minute=0))}
    sms = rates[("tier_dropped", "sms")]
    assert (sms.total, sms.reached, sms.delivered, sms.failed) == (2, 1, 1, 1)


def test_the_same_push_again_is_acknowledged_and_changes_nothing(app_ctx, client, fakes):
    row = sent_by_sms(member_on(follows=False))
    body = [report(row.sms_message_id, row.id)]
    assert push(client, body).status_code == 200
    drain_inbox(sms_reports.SOURCE)
    assert push(client, body).status_code == 200  # Aliyun retries when our answer was lost
    drain_inbox(sms_reports.SOURCE)
    assert len(stored_reports()) == 1
    assert fresh(row).status == "delivered"


def test_a_wrong_secret_is_401_and_nothing_is_stored(app_ctx, client):
    response = push(client, [report("900619746936498440^0", 1)], secret="not-the-secret")
    assert response.status_code == 401
    assert stored_reports() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b'{"biz_id": "1"}', "body"),  # one report, not the array Aliyun sends
        (json.dumps([{**report("1", 1), "success": "true"}]).encode(), "0"),  # a JSON boolean, as Aliyun sends
        (json.dumps([{k: v for k, v in report("1", 1).items() if k != "biz_id"}]).encode(), "0"),
    ],
)
def test_a_malformed_push_is_422_with_the_field_and_not_stored(app_ctx, client, body, field):
    response = push(client, body, **{"Accept-Language": "zh-CN"})
    assert response.status_code == 422
    assert field in response.json["error"]["fields"]
    assert stored_reports() == []


def test_a_report_for_an_unknown_message_is_kept_with_its_ids(app_ctx, client, fakes):
    row = sent_by_sms(member_on(follows=False))
    assert push(client, [report(row.sms_message_id, row.id), report("123456^0", "999999")]).status_code == 200
    drain_inbox(sms_reports.SOURCE)
    (event,) = stored_reports()
    assert (
        event.status == "processed" and event.outcome == "delivered 1, unknown 1; unknown BizId/OutId: 123456^0/999999"
    )
    assert fresh(row).status == "delivered"


def test_a_report_before_the_send_is_recorded_waits_and_then_applies(app_ctx, client, fakes):
    """The carrier can be faster than our commit: the row is attempted, its BizId not on it yet."""
    row = planned(member_on(follows=False))
    row.status, row.claimed_at, row.attempted_at, row.attempts = "sending", utcnow(), utcnow(), 1
    db.session.commit()
    assert push(client, [report("900619746936498440^0", row.id)]).status_code == 200
    drain_inbox(sms_reports.SOURCE)
    (event,) = stored_reports()
    assert event.status == "failed" and "still being sent" in event.last_error  # retried with backoff
    row = fresh(row)
    row.status, row.channel, row.sms_message_id, row.sent_at = "sent", "sms", "900619746936498440^0", utcnow()
    db.session.execute(sa.update(InboundEvent).values(next_attempt_at=utcnow()))
    db.session.commit()
    drain_inbox(sms_reports.SOURCE)
    assert fresh(row).status == "delivered"


def test_the_real_gateways_biz_id_is_kept_and_its_report_finds_the_row(app, app_ctx, client, fakes, http_mock):
    """End to end with Aliyun's recorded SendSms answer: the BizId it returns is what the report carries."""
    http_mock.add(
        responses.GET,
        f"{SMS_API}/",
        json={"Message": "OK", "RequestId": "F655A8D5", "BizId": "900619746936498440^0", "Code": "OK"},
    )
    installed = gateways.installed(app)
    fake_sms, installed.sms = installed.sms, AliyunSms(SMS_API, "LTAI-test", "secret-test", "一汽大众会员")
    try:
        tunables.set_value(channels.CHANNELS.key, {"*": ["sms"]}, actor=("test", "t"))
        row = sent_by_sms(factories.member())
    finally:
        installed.sms = fake_sms
    assert row.sms_message_id == "900619746936498440^0"
    assert push(client, [report("900619746936498440^0", row.id, success=False, code="UNDELIV")]).status_code == 200
    drain_inbox(sms_reports.SOURCE)
    assert (fresh(row).status, fresh(row).delivery_status) == ("failed", "UNDELIV")
