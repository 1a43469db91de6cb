"""SMS delivery receipts: Aliyun's SmsReport HTTP push (recorded shape), secret in the address,
stored raw first, idempotent, applied to the notification by its BizId; early and unknown reports."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import runpy
from pathlib import Path
from types import SimpleNamespace

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
from app.core.models import AuditEntry, InboundEvent
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


@pytest.fixture
def two_secrets(app, monkeypatch):
    """The address given to Aliyun is changing: the new secret first, the old one still taken."""
    new, old = "n" * 32 + "-new", "o" * 32 + "-old"
    settings = app.extensions["loyalty.settings"]
    monkeypatch.setitem(
        app.extensions, "loyalty.settings", dataclasses.replace(settings, SMS_REPORT_SECRET=f"{new}, {old}")
    )
    return new, old


def test_while_the_secret_rotates_both_addresses_are_taken_then_only_the_new_one(app, app_ctx, client, two_secrets):
    new, old = two_secrets
    assert push(client, [], secret=new).status_code == 200  # the console's connectivity test
    assert push(client, [], secret=old).status_code == 200  # Aliyun's retries of pushes to the old address
    assert push(client, [], secret=f"{new},{old}").status_code == 401  # the setting itself is no secret
    assert push(client, [], secret=new[:-1]).status_code == 401
    settings = app.extensions["loyalty.settings"]
    app.extensions["loyalty.settings"] = dataclasses.replace(settings, SMS_REPORT_SECRET=new)
    assert push(client, [], secret=old).status_code == 401
    assert push(client, [], secret=new).status_code == 200


def test_no_secret_configured_takes_nothing(app, app_ctx, client, monkeypatch):
    settings = app.extensions["loyalty.settings"]
    monkeypatch.setitem(app.extensions, "loyalty.settings", dataclasses.replace(settings, SMS_REPORT_SECRET=" , "))
    assert push(client, [], secret=" ").status_code == 401


def test_the_secret_is_compared_in_constant_time_with_every_configured_secret(app, app_ctx, two_secrets, monkeypatch):
    compared = []

    def compare_digest(a, b):
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(sms_reports.hmac, "compare_digest", compare_digest)
    new, old = two_secrets
    sms_reports.check_secret(new)  # the first matches: the second is compared all the same
    assert compared == [(new.encode(), new.encode()), (new.encode(), old.encode())]


def test_the_secret_is_in_no_log_line_audit_row_or_stored_event(app, app_ctx, client, fakes, caplog):
    caplog.set_level(logging.DEBUG)
    secret = current_settings().SMS_REPORT_SECRET
    row = sent_by_sms(member_on(follows=False))
    assert push(client, [report(row.sms_message_id, row.id)]).status_code == 200
    assert push(client, b"{not json").status_code == 422
    assert push(client, [], secret=secret + "x").status_code == 401  # a near miss is not logged either
    drain_inbox(sms_reports.SOURCE)
    assert fresh(row).status == "delivered"
    assert caplog.records and secret not in caplog.text
    for model in (InboundEvent, AuditEntry):
        for stored in db.session.scalars(sa.select(model)):
            assert secret not in repr({c.key: getattr(stored, c.key) for c in sa.inspect(model).mapper.column_attrs})


def test_request_lines_are_logged_without_the_secret(app, caplog):
    """The development server's request lines (werkzeug) and gunicorn's access log."""
    from gunicorn.config import Config

    secret = app.extensions["loyalty.settings"].SMS_REPORT_SECRET
    caplog.set_level(logging.INFO, logger="werkzeug")
    line = f"POST /api/v1/sms/reports/{secret}?x=1 HTTP/1.1"
    logging.getLogger("werkzeug").info('%s - - "%s" %s -', "127.0.0.1", line, 200)
    assert secret not in caplog.text and '"POST /api/v1/sms/reports/[redacted]?x=1 HTTP/1.1" 200' in caplog.text

    hooks = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
    access = hooks["logger_class"](Config())
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": f"/api/v1/sms/reports/{secret}?x=1",
        "PATH_INFO": f"/api/v1/sms/reports/{secret}",
        "QUERY_STRING": "x=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_REFERER": f"https://loyalty.example.com/api/v1/sms/reports/{secret}",
    }
    response = SimpleNamespace(status="200 OK", sent=20, headers=[])
    atoms = access.atoms(response, SimpleNamespace(headers=[]), environ, dt.timedelta(milliseconds=3))
    assert secret not in repr(atoms)
    assert atoms["r"] == "POST /api/v1/sms/reports/[redacted]?x=1 HTTP/1.1"
    assert atoms["U"] == "/api/v1/sms/reports/[redacted]"
