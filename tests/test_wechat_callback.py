"""The service-account callback: verification, safe mode, hardening, dedupe, events, conversation."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.core import inbox
from app.core.clock import utcnow
from app.core.db import db
from app.core.security import sha256_hex
from app.members import services
from app.members.models import Member, WechatIdentity
from app.points import ledger
from app.wechat import protocol, simulator
from tests import factories
from tests.wechat_helpers import AES_KEY, APP_ID, TOKEN, Callback, SentMessages, event_xml, parse_reply, text_xml


@pytest.fixture
def wx(client):
    return Callback(client)


@pytest.fixture
def sent(fakes, app, http_mock):
    from app.wechat import clients

    clients.forget_clients(app)
    return SentMessages(fakes.official_account)


@pytest.fixture
def member_with_wechat(app_ctx):
    member = factories.member(status="active", name="王芳")
    ledger.earn(
        ledger.Earning(member_id=member.id, currency="reward", points=1_234, idempotency_key="seed", source_type="test")
    )
    identity = WechatIdentity(
        app_kind="official", app_id=APP_ID, openid="o-member-1", member_id=member.id, following=True
    )
    db.session.add(identity)
    db.session.flush()
    return member


def inbox_rows() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(inbox.InboundEvent))


# --- verification and the fixed vectors of wechatpy's own tests -----------------------------


def test_url_verification_echoes_echostr_only_with_a_good_signature(client):
    query = simulator.signed_query(TOKEN)
    assert (
        client.get("/wechat/callback", query_string={**query, "echostr": "abc123"}).get_data(as_text=True) == "abc123"
    )
    bad = client.get("/wechat/callback", query_string={**query, "signature": "0" * 40, "echostr": "x"})
    assert bad.status_code == 403 and bad.json["error"]["code"] == "callback_rejected"
    stale = simulator.signed_query(TOKEN, timestamp=str(int(utcnow().timestamp()) - 301))
    assert client.get("/wechat/callback", query_string=stale).status_code == 403


def test_the_plaintext_signature_vector_from_wechatpy():
    args = {"signature": "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff", "timestamp": "1410685589", "nonce": "test"}
    protocol.verify_url("test", args, window=300, now=1410685589)
    with pytest.raises(protocol.CallbackRejected):
        protocol.verify_url("test", {**args, "nonce": "tesT"}, window=300, now=1410685589)


WECHATPY_AES_VECTOR = (
    "<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>\n"
    "<Encrypt><![CDATA[RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDX"
    "zF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nP"
    "wBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdsho"
    "QgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=]]>"
    "</Encrypt>\n<AgentID><![CDATA[1]]></AgentID>\n</xml>"
)


def test_the_safe_mode_vector_from_wechatpy_decrypts():
    args = {
        "msg_signature": "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
        "timestamp": "1411525903",
        "nonce": "461056294",
        "encrypt_type": "aes",
    }
    envelope = protocol.open_envelope(WECHATPY_AES_VECTOR.encode(), args, token=TOKEN, aes_key=AES_KEY, app_id=APP_ID)
    message = protocol.read_message(envelope.xml)
    assert (message.type, message.content, message.source) == ("text", "test", "messense")
    with pytest.raises(protocol.CallbackRejected):
        protocol.open_envelope(
            WECHATPY_AES_VECTOR.encode(), {**args, "nonce": "461056295"}, token=TOKEN, aes_key=AES_KEY, app_id=APP_ID
        )


# --- conversation, plaintext and safe mode -------------------------------------------------


def test_points_keyword_answers_with_the_balance(wx, member_with_wechat):
    reply = wx.reply(text_xml("o-member-1", "积分"))
    assert reply["MsgType"] == "text"
    assert "可用积分 1234" in reply["Content"]
    assert reply["ToUserName"] == "o-member-1" and reply["FromUserName"] == APP_ID


def test_safe_mode_requests_get_encrypted_replies(wx, member_with_wechat):
    response = wx.post(text_xml("o-member-1", "等级"), aes=True)
    assert response.status_code == 200
    assert "<Encrypt>" in response.get_data(as_text=True)
    reply = parse_reply(response.get_data(as_text=True), aes=True)
    assert "银卡" in reply["Content"]


def test_a_tampered_safe_mode_body_is_refused(wx, member_with_wechat):
    body, query = simulator.encrypt(
        text_xml("o-member-1", "积分"), simulator.signed_query(TOKEN), token=TOKEN, aes_key=AES_KEY, app_id=APP_ID
    )
    forged = body.replace("<Encrypt><![CDATA[", "<Encrypt><![CDATA[AAAA")
    response = wx.client.post("/wechat/callback", query_string=query, data=forged.encode())
    assert response.status_code == 403


def test_english_members_are_answered_in_english(wx, member_with_wechat):
    member_with_wechat.locale = "en"
    db.session.flush()
    assert "Your points: 1234 available" in wx.reply(text_xml("o-member-1", "points"))["Content"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("客服", "transfer_customer_service"),
        ("人工", "transfer_customer_service"),
        ("预约", "news"),
        ("推荐", "news"),
        ("hello?", "text"),
    ],
)
def test_keywords_route_to_the_right_reply(wx, member_with_wechat, content, expected):
    assert wx.reply(text_xml("o-member-1", content))["MsgType"] == expected


def test_menu_clicks(wx, member_with_wechat):
    assert "1234" in wx.reply(event_xml("o-member-1", "CLICK", EventKey="my_points"))["Content"]
    benefits = wx.reply(event_xml("o-member-1", "CLICK", EventKey="my_benefits"))["Content"]
    assert "道路救援" in benefits
    assert wx.reply(event_xml("o-member-1", "CLICK", EventKey="contact_service"))["MsgType"] == (
        "transfer_customer_service"
    )


def test_a_stranger_is_asked_to_join(wx, app_ctx):
    reply = wx.reply(text_xml("o-stranger", "积分"))
    assert "还不是会员" in reply["Content"]


# --- hardening -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not xml at all", 400),
        (b"<root><a>1</a></root>", 400),
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><xml>&lol2;</xml>',
            400,
        ),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml>&xxe;</xml>', 400),
        (b"<xml><ToUserName>a</ToUserName></xml>", 400),
        (b"<xml>" + b"A" * (70 * 1024) + b"</xml>", 413),
        # well-formed, but fields that must be plain text are not (nested, attributes, repeated)
        (text_xml("o-x", "hi", msg_id=1).replace("<MsgId>1</MsgId>", "<MsgId>1<a/></MsgId>").encode(), 400),
        (text_xml("o-x", "hi", msg_id=2).replace("<MsgId>2</MsgId>", '<MsgId x="1">2</MsgId>').encode(), 400),
        (text_xml("o-x", "hi", msg_id=3).replace("<MsgId>3</MsgId>", "<MsgId>3</MsgId><MsgId>4</MsgId>").encode(), 400),
        (text_xml("o-x", "hi").replace("</xml>", "<CreateTime>1</CreateTime></xml>").encode(), 400),
        (
            event_xml("o-x", "subscribe", EventKey="qrscene_adv:1")
            .replace("]]></EventKey>", "]]><b/></EventKey>")
            .encode(),
            400,
        ),
        (text_xml("o-x", "hi").replace("]]></Content>", "]]><b/></Content>").encode(), 400),
    ],
)
def test_hostile_or_malformed_bodies_get_a_4xx_and_store_nothing(wx, app_ctx, body, status):
    response = wx.post(body)
    assert response.status_code == status
    assert inbox_rows() == 0


def test_a_nonce_replayed_with_another_body_is_refused(wx, member_with_wechat):
    query = simulator.signed_query(TOKEN)
    assert wx.post(text_xml("o-member-1", "积分", msg_id=1), query=query).status_code == 200
    assert wx.post(text_xml("o-member-1", "等级", msg_id=2), query=query).status_code == 403


def test_with_redis_down_a_replayed_nonce_is_still_refused(wx, member_with_wechat, app, monkeypatch):
    import redis

    monkeypatch.setitem(app.extensions, "loyalty.redis", redis.Redis(port=1, socket_connect_timeout=0.1))
    query = simulator.signed_query(TOKEN)
    assert wx.post(text_xml("o-member-1", "积分", msg_id=1), query=query).status_code == 200
    refused = wx.post(text_xml("o-member-1", "等级", msg_id=2), query=query)
    assert refused.status_code == 403 and refused.json["error"]["details"]["reason"] == "replayed_nonce"
    assert inbox_rows() == 1


@pytest.mark.postgres
@pytest.mark.committed
def test_a_scan_stored_on_the_fast_path_is_kept_encrypted_and_its_nonce_cannot_be_replayed(app, client, sent):
    """The deferred path stores the scan in its own autocommitted INSERT, outside the session."""
    with app.app_context():
        factories.staff(factories.dealer(code="D0101"), code="SA0101")
        db.session.commit()
    wx = Callback(client)
    scan = event_xml("o-fast-1", "subscribe", EventKey="qrscene_adv:SA0101")
    query = simulator.signed_query(TOKEN)
    first = wx.post(scan, query=query)
    retry = wx.post(scan, query=query)  # WeChat retrying: same nonce, same message
    forged = wx.post(event_xml("o-attacker", "subscribe", EventKey="qrscene_adv:SA0101"), query=query)
    assert first.status_code == retry.status_code == 200 and first.get_data() == retry.get_data()
    assert forged.status_code == 403 and forged.json["error"]["details"]["reason"] == "replayed_nonce"
    with app.app_context():
        (event,) = db.session.scalars(sa.select(inbox.InboundEvent)).all()
        assert event.body == scan.encode() and event.status == "processed"  # drained (eager jobs)
        assert event.signed_nonce == f"{query['timestamp']}:{query['nonce']}"
        stored = db.session.scalar(sa.text("SELECT body FROM inbound_events"))
        assert b"o-fast-1" not in bytes(stored)  # encrypted at rest, as through the session
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Member)) == 1
    assert len(sent.texts_to("o-fast-1")) == 1 and sent.texts_to("o-attacker") == []


def test_a_wechat_retry_gets_the_same_reply_and_has_one_effect(wx, app_ctx, sent, time_machine):
    factories.staff(factories.dealer(code="D0101"), code="SA0101")
    body = event_xml("o-new-1", "subscribe", EventKey="qrscene_adv:SA0101")
    query = simulator.signed_query(TOKEN)
    first = wx.post(body, query=query)
    second = wx.post(body, query=query)  # same nonce and body: WeChat retrying
    time_machine.move_to(utcnow() + dt.timedelta(seconds=5))  # WeChat retries after 5 s
    third = wx.post(body)  # a retry with a fresh signature
    assert first.get_data() == second.get_data() == third.get_data()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Member)) == 1
    assert inbox_rows() == 1
    assert len(sent.texts_to("o-new-1")) == 1  # one welcome, whatever the retries


def test_with_redis_down_the_callback_still_answers(wx, member_with_wechat, app, monkeypatch):
    import redis

    monkeypatch.setitem(app.extensions, "loyalty.redis", redis.Redis(port=1, socket_connect_timeout=0.1))
    reply = wx.reply(text_xml("o-member-1", "积分"))
    assert "1234" in reply["Content"]
    assert inbox_rows() == 1


# --- follow, scenes, location, delivery reports ---------------------------------------------


def test_unfollow_keeps_the_member(wx, member_with_wechat):
    assert wx.reply(event_xml("o-member-1", "unsubscribe")) == {}
    identity = db.session.scalar(sa.select(WechatIdentity).where(WechatIdentity.openid == "o-member-1"))
    db.session.refresh(identity)
    assert identity.following is False and identity.unfollowed_at is not None
    assert db.session.get(Member, member_with_wechat.id).status == "active"


def test_an_advisor_qr_prospect_who_buys_is_joined_to_the_buyer_by_the_order_code(wx, app_ctx, post_dms, sent):
    from app.members.models import EnrollmentToken
    from tests import dms_events

    factories.staff(factories.dealer(code="D0101"), code="SA0101")
    wx.reply(event_xml("o-walk-in", "subscribe", EventKey="qrscene_adv:SA0101"))  # prospect, welcome gift
    prospect_id = db.session.scalar(sa.select(WechatIdentity.member_id).where(WechatIdentity.openid == "o-walk-in"))
    post_dms(dms_events.delivered("13800000002", factories.vin(), price_fen=20_000_000))  # no phone to match
    token = db.session.scalar(sa.select(EnrollmentToken))
    secret = services.issue_order_secret(token)  # what the advisor's screen shows
    wx.reply(event_xml("o-walk-in", "SCAN", EventKey=f"order:{secret}"))
    assert "2500" in sent.last_text_to("o-walk-in")  # activated: purchase + welcome
    db.session.expire_all()
    identity = db.session.scalar(sa.select(WechatIdentity).where(WechatIdentity.openid == "o-walk-in"))
    assert identity.member_id == token.member_id
    assert db.session.get(Member, prospect_id).status == "closed"
    assert db.session.get(Member, token.member_id).status == "active"


def test_scanning_the_order_code_activates_the_buyer_and_credits_points(wx, app_ctx, post_dms, sent):
    from app.members.models import EnrollmentToken
    from tests import dms_events

    factories.staff(factories.dealer(code="D0101"), code="SA0101")
    assert post_dms(dms_events.delivered("13800000001", factories.vin(), price_fen=20_000_000)).status_code == 202
    token = db.session.scalar(sa.select(EnrollmentToken))
    secret = services.issue_order_secret(token)  # what the advisor's screen shows
    ack = wx.reply(event_xml("o-buyer", "subscribe", EventKey=f"qrscene_order:{secret}"))
    assert "开通会员" in ack["Content"]  # answered at once; the work runs as a job
    welcome = sent.last_text_to("o-buyer")
    assert "金卡" in welcome and "2500" in welcome  # 2,000 purchase + 500 welcome
    db.session.expire_all()
    member = db.session.get(Member, token.member_id)
    assert member.status == "active" and token.used_at is not None
    identity = db.session.scalar(sa.select(WechatIdentity).where(WechatIdentity.openid == "o-buyer"))
    assert identity.member_id == member.id and identity.following
    event = db.session.scalar(sa.select(inbox.InboundEvent).where(inbox.InboundEvent.type == "event.subscribe_scan"))
    assert event.status == "processed"
    # Scanning again changes nothing and credits nothing.
    wx.reply(event_xml("o-buyer", "SCAN", EventKey=f"order:{secret}"))
    assert "2500" not in sent.last_text_to("o-buyer")
    # Another WeChat account cannot take the used code.
    wx.reply(event_xml("o-someone-else", "SCAN", EventKey=f"order:{secret}"))
    assert "已被使用" in sent.last_text_to("o-someone-else")


def test_an_expired_order_code_says_so(wx, app_ctx, sent):
    member = factories.member(status="pre_enrolled")
    from app.members.models import EnrollmentToken

    db.session.add(
        EnrollmentToken(
            token_hash=sha256_hex("expired-token"), member_id=member.id, expires_at=utcnow() - dt.timedelta(minutes=1)
        )
    )
    db.session.flush()
    wx.reply(event_xml("o-x", "subscribe", EventKey="qrscene_order:expired-token"))
    assert "已过期" in sent.last_text_to("o-x")
    assert db.session.get(Member, member.id).status == "pre_enrolled"


def test_an_advisor_code_enrolls_a_newcomer_with_attribution(wx, app_ctx, sent):
    dealer = factories.dealer(code="D0101", name="长春金达店")
    advisor = factories.staff(dealer, code="SA0101", name="王磊")
    wx.reply(event_xml("o-prospect", "subscribe", EventKey="qrscene_adv:SA0101"))
    welcome = sent.last_text_to("o-prospect")
    assert "王磊" in welcome and "500" in welcome
    member = db.session.scalar(sa.select(Member))
    assert (member.enrollment_channel, member.enrolling_staff_id, member.enrolling_dealer_id) == (
        "advisor_qr",
        advisor.id,
        dealer.id,
    )
    assert member.attribution_until - member.enrolled_at == dt.timedelta(days=90)
    assert member.phone is None and member.name is None  # nothing personal before consent
    wx.reply(event_xml("o-prospect", "SCAN", EventKey="adv:SA0101"))
    assert "已经是会员" in sent.last_text_to("o-prospect")


def test_location_is_stored_and_the_location_picker_answers_with_nearest_dealers(wx, member_with_wechat):
    factories.dealer(code="D0101", name="长春金达店", latitude=43.8868, longitude=125.2773, address="西安大路 1688 号")
    factories.dealer(code="D0201", name="北京百得店", latitude=39.999, longitude=116.47)
    assert wx.reply(event_xml("o-member-1", "LOCATION", Latitude=43.88, Longitude=125.28, Precision=30)) == {}
    identity = db.session.scalar(sa.select(WechatIdentity).where(WechatIdentity.openid == "o-member-1"))
    db.session.refresh(identity)
    assert (identity.latitude, identity.longitude) == (43.88, 125.28)
    reply = wx.reply(
        text_xml("o-member-1", "x").replace(
            "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[x]]></Content>",
            "<MsgType><![CDATA[location]]></MsgType><Location_X>43.88</Location_X><Location_Y>125.28</Location_Y>"
            "<Scale>15</Scale><Label><![CDATA[here]]></Label>",
        )
    )
    lines = reply["Content"].splitlines()
    assert "长春金达店" in lines[1] and "北京百得店" in lines[2]


def test_with_redis_down_a_scan_is_kept_and_processed_when_the_sweeper_runs(wx, app, app_ctx, sent, monkeypatch):
    import dataclasses

    import redis as redis_lib

    from app.jobs.drain import requeue_stalled_events

    factories.staff(factories.dealer(code="D0101"), code="SA0101")
    settings = app.extensions["loyalty.settings"]
    down = redis_lib.Redis(port=1, socket_connect_timeout=0.1)
    monkeypatch.setitem(app.extensions, "loyalty.settings", dataclasses.replace(settings, JOBS_MODE="rq"))
    monkeypatch.setitem(app.extensions, "loyalty.redis", down)
    monkeypatch.setitem(app.extensions, "loyalty.rq_redis", down)
    ack = wx.reply(event_xml("o-offline", "subscribe", EventKey="qrscene_adv:SA0101"))
    assert "开通会员" in ack["Content"]
    event = db.session.scalar(sa.select(inbox.InboundEvent))
    assert event.status == "received" and db.session.scalar(sa.select(sa.func.count()).select_from(Member)) == 0
    monkeypatch.undo()  # Redis is back; eager jobs again
    db.session.execute(sa.update(inbox.InboundEvent).values(received_at=utcnow() - dt.timedelta(minutes=5)))
    assert requeue_stalled_events() == 1
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Member)) == 1
    assert "500" in sent.last_text_to("o-offline")
