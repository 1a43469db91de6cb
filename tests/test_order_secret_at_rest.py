"""The order-QR bearer secret exists at rest only inside the encrypted raw body of the scan (and as
the token's SHA-256): not in the inbox dedupe key, the QR code row, audit details, logs or Redis."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from app.core import inbox
from app.core.db import Base, db
from app.members.models import EnrollmentToken, Member
from app.wechat import protocol, simulator
from tests import dms_events, factories
from tests.statement_helpers import Statements
from tests.wechat_helpers import TOKEN, Callback, event_xml

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def _secret_of(qr: dict) -> str:
    scene = qr["scene"]
    assert scene.startswith("order:") and not scene.startswith("order:#")
    return scene.removeprefix("order:")


def _tables_holding(secret: str) -> list[str]:
    """Every table whose rows contain the secret in any column, as text (bytea shows as hex)."""
    found = []
    for name in Base.metadata.tables:
        hits = db.session.scalar(
            sa.text(f"SELECT count(*) FROM {name} t WHERE strpos(row_to_json(t)::text, :secret) > 0"),
            {"secret": secret},
        )
        if hits:
            found.append(name)
    return found


def _redis_holding(app, secret: str) -> list[bytes]:
    found = []
    for key in ("loyalty.redis", "loyalty.rq_redis"):
        connection = app.extensions[key]
        for name in connection.scan_iter():
            kind = connection.type(name)
            values: list[bytes] = [name]
            if kind == b"string":
                values.append(connection.get(name) or b"")
            elif kind == b"hash":
                values.extend(v for pair in connection.hgetall(name).items() for v in pair)
            elif kind == b"list":
                values.extend(connection.lrange(name, 0, -1))
            elif kind in (b"set", b"zset"):
                values.extend(connection.zrange(name, 0, -1) if kind == b"zset" else connection.smembers(name))
            if any(secret.encode() in v for v in values):
                found.append(name)
    return found


def test_a_scanned_order_secret_is_stored_nowhere_in_clear_and_a_retry_is_still_deduplicated(
    app, client, post_dms, fakes, http_mock, caplog, monkeypatch
):
    from app import jobs
    from app.wechat import clients

    clients.forget_clients(app)
    dispatched: list[str] = []  # what would go to RQ (tests run jobs eagerly, so Redis alone proves little)
    send = jobs.dispatch

    def keep_dispatch(spec, args, job_id=None):
        dispatched.append(f"{spec.name} {args!r} {job_id}")
        return send(spec, args, job_id)

    monkeypatch.setattr(jobs, "dispatch", keep_dispatch)
    with app.app_context():
        dealer = factories.dealer(code="D0101")
        factories.staff(dealer, code="SA0101")
        _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
        db.session.commit()
    assert post_dms(dms_events.delivered("13800000031", factories.vin())).status_code == 202
    with app.app_context():
        member_no = db.session.scalar(sa.select(Member.member_no))

    def keep(_connection, statement, parameters) -> str:
        return f"{statement} {parameters!r}"

    with Statements(keep=keep) as statements:
        handed = client.post(
            f"/api/v1/cs/members/{member_no}/enrollment-qr",
            json={"reason": "交车"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert handed.status_code == 200, handed.json
    secret = _secret_of(handed.json)
    assert statements and all(secret not in sent for sent in statements)  # not even briefly written

    caplog.set_level(logging.DEBUG)
    wx = Callback(client)
    scan = event_xml("o-buyer-secret", "subscribe", EventKey=f"qrscene_order:{secret}")
    first = wx.post(scan)
    retry = wx.post(scan, query=simulator.signed_query(TOKEN))  # WeChat's retry: a fresh signature
    assert first.status_code == retry.status_code == 200 and first.get_data() == retry.get_data()

    with app.app_context():
        (event,) = db.session.scalars(sa.select(inbox.InboundEvent).where(inbox.InboundEvent.source == "wechat"))
        assert event.status == "processed" and secret.encode() in event.body  # decrypted: the raw scan is kept
        assert event.external_id == protocol.dedupe_key(protocol.read_message(scan.encode()))
        assert secret not in event.external_id
        assert db.session.scalar(sa.select(EnrollmentToken.used_at)) is not None  # activated once
        assert _tables_holding(secret) == []  # the stored body is ciphertext; every other column is clean
    assert _redis_holding(app, secret) == []
    assert dispatched and all(secret not in job for job in dispatched)
    assert all(secret not in record.getMessage() for record in caplog.records)


def test_two_scans_of_different_codes_in_one_second_are_kept_apart(app_ctx):
    def key(event_key: str) -> str:
        return protocol.dedupe_key(
            protocol.read_message(event_xml("o-same", "SCAN", create_time=1_900_000_600, EventKey=event_key).encode())
        )

    assert key("order:secret-a") != key("order:secret-b")
    assert key("order:secret-a") == key("order:secret-a")
    assert "secret-a" not in key("order:secret-a")
