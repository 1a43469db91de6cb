"""Callback hardening: constant-time signatures, safe mode only, and a per-sender limit that never
drops a WeChat retry of a message already stored."""

from __future__ import annotations

import dataclasses
import hmac

import pytest
import sqlalchemy as sa
from flask import request

from app.config import settings_of
from app.core import inbox
from app.core.db import db
from app.members.models import Member
from app.wechat import protocol, simulator
from tests import factories
from tests.wechat_helpers import TOKEN, Callback, event_xml, parse_reply, text_xml


@pytest.fixture
def wx(client):
    return Callback(client)


def test_both_signatures_are_compared_in_constant_time(wx, app_ctx, monkeypatch):
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    query = simulator.signed_query(TOKEN)
    assert wx.post(text_xml("o-ct-1", "积分"), query=dict(query)).status_code == 200
    assert any(query["signature"].encode() in pair for pair in compared)  # the URL signature
    compared.clear()
    assert wx.post(text_xml("o-ct-1", "积分"), aes=True).status_code == 200
    assert len(compared) == 2  # URL signature, then msg_signature


@pytest.fixture
def safe_mode_only(app, monkeypatch):
    settings = dataclasses.replace(settings_of(app), WECHAT_SAFE_MODE_ONLY=True)
    monkeypatch.setitem(app.extensions, "loyalty.settings", settings)


def test_safe_mode_only_refuses_plaintext_callbacks(wx, app_ctx, safe_mode_only):
    refused = wx.post(text_xml("o-safe-1", "积分"))
    assert refused.status_code == 403
    assert refused.json["error"]["details"]["reason"] == "plaintext_refused"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(inbox.InboundEvent)) == 0
    encrypted = wx.post(text_xml("o-safe-1", "积分"), aes=True)
    assert encrypted.status_code == 200 and parse_reply(encrypted.get_data(as_text=True), aes=True)
    query = simulator.signed_query(TOKEN)
    assert wx.client.get("/wechat/callback", query_string={**query, "echostr": "e1"}).get_data() == b"e1"


@pytest.fixture
def limit_of_two(app, app_ctx, monkeypatch):
    settings = dataclasses.replace(settings_of(app), WECHAT_CALLBACK_RATE_LIMIT="2/minute")
    monkeypatch.setitem(app.extensions, "loyalty.settings", settings)


def _outcome(key: str) -> str | None:
    return db.session.scalar(sa.select(inbox.InboundEvent.outcome).where(inbox.InboundEvent.external_id == key))


def test_over_the_limit_new_messages_are_not_processed_but_retries_keep_their_reply(wx, limit_of_two):
    first, second, third = (text_xml("o-chatty", "积分", msg_id=n) for n in (101, 102, 103))
    first_reply = wx.post(first)
    assert parse_reply(first_reply.get_data(as_text=True))["Content"]
    assert parse_reply(wx.post(second).get_data(as_text=True))["Content"]
    over = wx.post(third)
    assert (over.status_code, over.get_data()) == (200, b"success")
    assert _outcome("msg:103") == "rate_limited"  # stored, not processed
    retry = wx.post(first)  # WeChat retrying the first message (fresh signature), still over the limit
    assert retry.get_data() == first_reply.get_data()
    assert wx.post(third).get_data() == b"success"  # a retry of the limited one: still not processed
    other = wx.post(text_xml("o-quiet", "积分", msg_id=201))  # the limit is per sender
    assert parse_reply(other.get_data(as_text=True))["Content"]


def test_over_the_limit_a_new_scan_is_not_processed_and_a_stored_scans_retry_is_answered(wx, limit_of_two, fakes):
    factories.staff(factories.dealer(code="D0101"), code="SA0101")
    scan = event_xml("o-scanner", "subscribe", create_time=1_900_000_000, EventKey="qrscene_adv:SA0101")
    acknowledged = wx.post(scan)
    assert "Welcome" in acknowledged.get_data(as_text=True) or "欢迎" in acknowledged.get_data(as_text=True)
    wx.post(text_xml("o-scanner", "积分", msg_id=301))  # the second message: at the limit
    assert wx.post(scan).get_data() == acknowledged.get_data()  # a retry of the stored scan
    members = db.session.scalar(sa.select(sa.func.count()).select_from(Member))
    flood = event_xml("o-scanner", "SCAN", create_time=1_900_000_100, EventKey="adv:SA0101")
    assert wx.post(flood).get_data() == b"success"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Member)) == members
    key = protocol.dedupe_key(protocol.read_message(flood.encode()))  # the scene is stored hashed
    assert _outcome(key) == "rate_limited"
    assert wx.post(flood).get_data() == b"success"  # its retry: not processed either


def test_the_callback_skips_flask_limiters_hook_having_no_limit_of_its_own(app, wx, app_ctx, monkeypatch):
    """flask-limiter would find nothing to check on the callback (it counts each sender itself), at
    ~0.15 ms a request: its hook is skipped there, and only there."""
    from flask_limiter.util import get_qualified_name

    from app.core.ratelimit import limiter

    assert get_qualified_name(app.view_functions["wechat_callback.receive"]) not in limiter._marked_for_limiting
    checked = []
    monkeypatch.setattr(limiter, "identify_request", lambda: checked.append(request.endpoint) or request.endpoint)
    assert wx.post(text_xml("o-hook-1", "积分")).status_code == 200
    assert checked == []
    wx.client.get("/healthz")
    assert checked == ["health.healthz"]
