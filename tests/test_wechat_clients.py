"""WeChat API clients against recorded request/response shapes (``responses``)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time

import pytest
import responses
import sqlalchemy as sa

from app.campaigns import qrcodes
from app.care.models import Notification
from app.core.clock import utcnow
from app.core.db import db
from app.members.models import WechatIdentity
from app.wechat import clients
from tests import factories
from tests.wechat_helpers import APP_ID, Callback, event_xml

API = "https://api.weixin.qq.com/cgi-bin"


@pytest.fixture(autouse=True)
def fresh_clients(app):
    clients.forget_clients(app)
    yield
    clients.forget_clients(app)


def stable_token(http_mock, token="T1"):
    return http_mock.add(responses.POST, f"{API}/stable_token", json={"access_token": token, "expires_in": 7200})


def test_the_access_token_comes_from_stable_token_and_is_shared_through_redis(app, app_ctx, http_mock):
    fetch = stable_token(http_mock)
    http_mock.add(responses.POST, f"{API}/menu/create", json={"errcode": 0, "errmsg": "ok"})
    clients.official_client().menu.create({"button": []})
    assert fetch.call_count == 1
    sent = json.loads(http_mock.calls[0].request.body)
    assert sent == {
        "grant_type": "client_credential",
        "appid": APP_ID,
        "secret": "test-app-secret",
        "force_refresh": False,
    }
    assert http_mock.calls[1].request.url.endswith("access_token=T1")
    clients.forget_clients(app)  # another process: a new client, the same Redis
    clients.official_client().menu.create({"button": []})
    assert fetch.call_count == 1
    ttl = app.extensions["loyalty.redis"].ttl(f"wechat:{APP_ID}_access_token")
    assert 6800 < ttl <= 7200 - clients.TOKEN_SAFETY_SECONDS


def test_an_expired_token_is_refetched_and_the_call_retried(app, app_ctx, http_mock):
    stable_token(http_mock, "T1")
    clients.official_client().access_token  # noqa: B018 - warm the cache with T1
    http_mock.replace(responses.POST, f"{API}/stable_token", json={"access_token": "T2", "expires_in": 7200})
    http_mock.add(responses.POST, f"{API}/menu/create", json={"errcode": 42001, "errmsg": "access_token expired"})
    http_mock.add(responses.POST, f"{API}/menu/create", json={"errcode": 0, "errmsg": "ok"})
    assert clients.official_client().menu.create({"button": []})["errcode"] == 0
    assert http_mock.calls[-1].request.url.endswith("access_token=T2")
    refetch = [json.loads(c.request.body) for c in http_mock.calls if c.request.url.endswith("/stable_token")][-1]
    assert refetch["force_refresh"] is True  # WeChat refused the current token: only then is it forced


def test_routine_renewals_never_force_so_processes_do_not_invalidate_each_other(app, app_ctx, http_mock, time_machine):
    stable_token(http_mock, "T1")
    http_mock.add(responses.POST, f"{API}/menu/create", json={"errcode": 0, "errmsg": "ok"})
    first = clients.official_client()
    first.menu.create({"button": []})
    time_machine.move_to(time.time() + 7200 - clients.TOKEN_SAFETY_SECONDS - 30)  # its last minute here
    first.menu.create({"button": []})  # Redis still holds it: used as is, not force-renewed
    clients.forget_clients(app)
    second = clients.official_client()  # another process adopts T1 from Redis
    second.menu.create({"button": []})
    app.extensions["loyalty.redis"].delete(f"wechat:{APP_ID}_access_token")  # its TTL ran out
    second.menu.create({"button": []})
    first.menu.create({"button": []})
    fetches = [json.loads(c.request.body) for c in http_mock.calls if c.request.url.endswith("/stable_token")]
    assert [f["force_refresh"] for f in fetches] == [False, False]


def test_only_one_process_refreshes_at_a_time(app, http_mock):
    calls = []
    gate = threading.Event()

    def slow_token(request):
        calls.append(request)
        gate.wait(1)
        return 200, {}, json.dumps({"access_token": "T-shared", "expires_in": 7200})

    http_mock.add_callback(responses.POST, f"{API}/stable_token", callback=slow_token)
    tokens = []

    def one_process():
        with app.app_context():
            client = clients.StableTokenClient(
                APP_ID,
                "test-app-secret",
                redis_client=app.extensions["loyalty.redis"],
                api_base="https://api.weixin.qq.com",
                timeout=5,
            )
            tokens.append(client.access_token)

    threads = [threading.Thread(target=one_process) for _ in range(8)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(10)
    assert tokens == ["T-shared"] * 8
    assert len(calls) == 1


def test_advisor_qr_is_a_30_day_string_scene_reused_until_it_nears_expiry(app_ctx, http_mock):
    stable_token(http_mock)
    create = http_mock.add(
        responses.POST,
        f"{API}/qrcode/create",
        json={"ticket": "TICKET1", "expire_seconds": 2592000, "url": "http://weixin.qq.com/q/abc"},
    )
    advisor = factories.staff(factories.dealer(), code="SA7")
    first = qrcodes.for_advisor(advisor)
    assert json.loads(create.calls[0].request.body) == {
        "expire_seconds": 2592000,
        "action_name": "QR_STR_SCENE",
        "action_info": {"scene": {"scene_str": "adv:SA7"}},
    }
    assert qrcodes.for_advisor(advisor).id == first.id
    first.expires_at = utcnow() + dt.timedelta(days=1)  # nearly expired: a new one is made
    db.session.flush()
    assert qrcodes.for_advisor(advisor).id != first.id
    image = qrcodes.png(first)
    assert image.startswith(b"\x89PNG\r\n\x1a\n") and len(image) > 300


def test_permanent_codes_respect_the_account_cap(app_ctx, http_mock):
    from app.campaigns.models import Campaign
    from app.core import tunables
    from app.core.errors import Conflict

    stable_token(http_mock)
    http_mock.add(responses.POST, f"{API}/qrcode/create", json={"ticket": "P", "url": "http://weixin.qq.com/q/p"})
    tunables.set_value("wechat.permanent_qr_cap", 1, actor=("test", "t"))
    now = utcnow()

    def make(code):
        return Campaign(
            code=code,
            name=code,
            status="active",
            budget_fen=10_000,
            amount_fen=500,
            starts_at=now,
            ends_at=now + dt.timedelta(days=5),
            channels=["qr"],
            send_name="s",
            wishing="w",
            act_name="a",
            remark="r",
        )

    first, second = make("c1"), make("c2")
    db.session.add_all([first, second])
    db.session.flush()
    assert qrcodes.for_campaign(first, permanent=True).permanent
    with pytest.raises(Conflict):
        qrcodes.for_campaign(second, permanent=True)


@pytest.mark.postgres
@pytest.mark.committed
def test_concurrent_requests_for_a_campaigns_permanent_code_allocate_one(app, http_mock):
    from app.campaigns.models import Campaign
    from tests.conftest import run_concurrently

    stable_token(http_mock)
    create = http_mock.add(
        responses.POST, f"{API}/qrcode/create", json={"ticket": "P", "url": "http://weixin.qq.com/q/p"}
    )
    now = utcnow()
    with app.app_context():
        campaign = Campaign(
            code="PERM", name="p", status="active", budget_fen=10_000, amount_fen=500, starts_at=now,
            ends_at=now + dt.timedelta(days=5), channels=["qr"], send_name="s", wishing="w", act_name="a", remark="r",
        )  # fmt: skip
        db.session.add(campaign)
        db.session.commit()
        campaign_id = campaign.id

    def allocate(_i: int) -> int:
        with app.app_context():
            code = qrcodes.for_campaign(db.session.get(Campaign, campaign_id), permanent=True)
            db.session.commit()
            return code.id

    ids = run_concurrently(6, allocate)
    assert len(set(ids)) == 1 and create.call_count == 1  # WeChat never gives a permanent code back


def test_the_qr_api_returns_the_code_as_image(client, app_ctx, http_mock):
    stable_token(http_mock)
    http_mock.add(
        responses.POST,
        f"{API}/qrcode/create",
        json={"ticket": "T", "expire_seconds": 2592000, "url": "http://weixin.qq.com/q/x"},
    )
    dealer = factories.dealer(code="D0101")
    factories.staff(dealer, code="SA0101")
    _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
    headers = {"Authorization": f"Bearer {token}"}
    data = client.get("/api/v1/cs/staff/SA0101/enrollment-qr", headers=headers).json
    assert data["scene"] == "adv:SA0101" and data["url"] == "http://weixin.qq.com/q/x"
    assert base64.b64decode(data["image"].split(",", 1)[1]).startswith(b"\x89PNG")
    png = client.get("/api/v1/cs/staff/SA0101/enrollment-qr.png", headers=headers)
    assert png.mimetype == "image/png"
    other = factories.dealer(code="D0999")
    factories.staff(other, code="SA0999")
    assert client.get("/api/v1/cs/staff/SA0999/enrollment-qr", headers=headers).status_code == 403


def test_a_pre_enrolled_buyers_order_qr_comes_from_their_open_token(client, app_ctx, http_mock, post_dms):
    from app.members import services
    from tests import dms_events

    stable_token(http_mock)
    http_mock.add(responses.POST, f"{API}/qrcode/create", json={"ticket": "T", "url": "http://weixin.qq.com/q/o"})
    dealer = factories.dealer(code="D0101")
    factories.staff(dealer, code="SA0101")
    _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
    headers = {"Authorization": f"Bearer {token}"}
    post_dms(dms_events.delivered("13800000031", factories.vin()))
    buyer = services.find_by_phone("13800000031")
    data = client.get(f"/api/v1/cs/members/{buyer.member_no}/enrollment-qr", headers=headers).json
    assert data["scene"] == f"order:{services.open_enrollment_token(buyer).token}"
    services.open_enrollment_token(buyer).used_at = utcnow()  # scanned: no open code any more
    db.session.flush()
    assert client.get(f"/api/v1/cs/members/{buyer.member_no}/enrollment-qr", headers=headers).status_code == 404


def test_a_tier_upgrade_sends_a_template_message_and_the_delivery_report_is_recorded(
    client, app_ctx, http_mock, post_dms
):
    from tests import dms_events

    stable_token(http_mock)
    send = http_mock.add(
        responses.POST, f"{API}/message/template/send", json={"errcode": 0, "errmsg": "ok", "msgid": 200228332}
    )
    factories.staff(factories.dealer(code="D0101"), code="SA0101")
    member = factories.member(status="active", phone="13900001234")
    db.session.add(
        WechatIdentity(app_kind="official", app_id=APP_ID, openid="o-up", member_id=member.id, following=True)
    )
    db.session.flush()
    post_dms(dms_events.delivered("13900001234", factories.vin(), price_fen=20_000_000))
    body = json.loads(send.calls[0].request.body)
    assert (body["touser"], body["template_id"]) == ("o-up", "tier-upgrade-template")
    assert body["data"]["keyword1"]["value"] == "金卡"
    notification = db.session.scalar(sa.select(Notification))
    assert (notification.kind, notification.status, notification.wechat_msgid) == ("tier_upgrade", "sent", 200228332)
    Callback(client).reply(event_xml("o-up", "TEMPLATESENDJOBFINISH", MsgID=200228332, Status="success"))
    db.session.refresh(notification)
    assert (notification.status, notification.delivery_status) == ("delivered", "success")


def test_a_member_who_does_not_follow_is_skipped_not_retried(app_ctx, http_mock, post_dms):
    from tests import dms_events

    factories.staff(factories.dealer(code="D0101"), code="SA0101")
    factories.member(status="active", phone="13900004321")
    post_dms(dms_events.delivered("13900004321", factories.vin(), price_fen=20_000_000))
    notification = db.session.scalar(sa.select(Notification))
    assert (notification.status, notification.error) == ("skipped", "member does not follow the account")
    assert len(http_mock.calls) == 0


def test_a_member_who_withdrew_service_notifications_gets_no_template_message(app_ctx, http_mock, post_dms):
    from app.members import privacy
    from tests import dms_events

    factories.staff(factories.dealer(code="D0101"), code="SA0101")
    member = factories.member(status="active", phone="13900005678")
    db.session.add(
        WechatIdentity(app_kind="official", app_id=APP_ID, openid="o-quiet", member_id=member.id, following=True)
    )
    privacy.set_purposes(member, set())
    delivery = dms_events.delivered("13900005678", factories.vin(), price_fen=20_000_000)
    delivery["payload"]["buyer"]["consent"]["purposes"] = []  # no notifications at the dealer either
    post_dms(delivery)
    notification = db.session.scalar(sa.select(Notification))
    assert (notification.kind, notification.status) == ("tier_upgrade", "skipped")
    assert notification.error == "no consent to service notifications"
    assert not [call for call in http_mock.calls if "template/send" in call.request.url]
