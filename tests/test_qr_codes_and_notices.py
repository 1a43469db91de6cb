"""Enrollment QR codes and tier notices, through the service account gateway (the in-process fake)."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
import sqlalchemy as sa

from app.campaigns import qrcodes
from app.campaigns.models import Campaign, QrCode
from app.care.models import Notification
from app.core import tunables
from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import Conflict
from app.core.security import sha256_hex
from app.gateways import Unavailable
from app.members import privacy, services
from app.members.models import WechatIdentity
from tests import dms_events, factories
from tests.care_helpers import at_daytime
from tests.conftest import run_concurrently
from tests.wechat_helpers import APP_ID, Callback, event_xml


def qr_requests(fakes):
    return [(call["scene"], call["expire_seconds"]) for call in fakes.official_account.of("qrcode.create")]


def campaign(code: str) -> Campaign:
    now = utcnow()
    row = Campaign(
        code=code, name=code, status="active", budget_fen=10_000, amount_fen=500, starts_at=now,
        ends_at=now + dt.timedelta(days=5), channels=["qr"], send_name="s", wishing="w", act_name="a", remark="r",
    )  # fmt: skip
    db.session.add(row)
    db.session.flush()
    return row


def test_advisor_qr_is_a_30_day_string_scene_reused_until_it_nears_expiry(app_ctx, fakes):
    advisor = factories.staff(factories.dealer(), code="SA7")
    first = qrcodes.for_advisor(advisor)
    assert qr_requests(fakes) == [("adv:SA7", 2_592_000)]
    assert qrcodes.for_advisor(advisor).id == first.id
    first.expires_at = utcnow() + dt.timedelta(days=1)  # nearly expired: a new one is made
    db.session.flush()
    assert qrcodes.for_advisor(advisor).id != first.id
    assert len(qr_requests(fakes)) == 2
    image = qrcodes.png(first)
    assert image.startswith(b"\x89PNG\r\n\x1a\n") and len(image) > 300


def test_permanent_codes_respect_the_account_cap(app_ctx, fakes):
    tunables.set_value("wechat.permanent_qr_cap", 1, actor=("test", "t"))
    first, second = campaign("c1"), campaign("c2")
    assert qrcodes.for_campaign(first, permanent=True).permanent
    assert qr_requests(fakes) == [("camp:c1", None)]  # None: WeChat's QR_LIMIT_STR_SCENE
    with pytest.raises(Conflict):
        qrcodes.for_campaign(second, permanent=True)


@pytest.mark.postgres
@pytest.mark.committed
def test_concurrent_requests_for_a_campaigns_permanent_code_allocate_one(app, fakes):
    with app.app_context():
        campaign_id = campaign("PERM").id
        db.session.commit()

    def allocate(_i: int) -> int:
        with app.app_context():
            code = qrcodes.for_campaign(db.session.get(Campaign, campaign_id), permanent=True)
            db.session.commit()
            return code.id

    ids = run_concurrently(6, allocate)
    assert len(set(ids)) == 1 and len(qr_requests(fakes)) == 1  # WeChat never gives a permanent code back


def test_the_qr_api_returns_the_code_as_image(client, app_ctx, fakes):
    dealer = factories.dealer(code="D0101")
    factories.staff(dealer, code="SA0101")
    _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
    headers = {"Authorization": f"Bearer {token}"}
    data = client.get("/api/v1/cs/staff/SA0101/enrollment-qr", headers=headers).json
    code = db.session.scalar(sa.select(QrCode))
    assert data["scene"] == "adv:SA0101" and data["url"] == code.url
    assert base64.b64decode(data["image"].split(",", 1)[1]).startswith(b"\x89PNG")
    png = client.get("/api/v1/cs/staff/SA0101/enrollment-qr.png", headers=headers)
    assert png.mimetype == "image/png"
    factories.staff(factories.dealer(code="D0999"), code="SA0999")
    refused = client.get("/api/v1/cs/staff/SA0999/enrollment-qr", headers=headers)
    missed = client.get("/api/v1/cs/staff/SA9999/enrollment-qr", headers=headers)
    assert refused.status_code == missed.status_code == 404  # another dealer's staff: like no staff at all
    assert refused.json["error"] == missed.json["error"]


def test_a_wechat_outage_is_a_503_to_retry_and_nothing_is_kept(client, app_ctx, fakes):
    dealer = factories.dealer(code="D0101")
    factories.staff(dealer, code="SA0101")
    _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
    fakes.official_account.fail_next("qrcode.create", Unavailable("ConnectionError"))
    response = client.get("/api/v1/cs/staff/SA0101/enrollment-qr", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json["error"]["code"] == "upstream_unavailable"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(QrCode)) == 0


def test_a_pre_enrolled_buyers_order_qr_comes_from_their_open_token(client, app_ctx, post_dms):
    dealer = factories.dealer(code="D0101")
    factories.staff(dealer, code="SA0101")
    _manager, token = factories.operator("dealer_manager", dealer_id=dealer.id)
    headers = {"Authorization": f"Bearer {token}"}
    post_dms(dms_events.delivered("13800000031", factories.vin()))
    buyer = services.find_by_phone("13800000031")
    url = f"/api/v1/cs/members/{buyer.member_no}/enrollment-qr"
    data = client.post(url, json={"reason": "delivery"}, headers=headers).json
    assert sha256_hex(data["scene"].removeprefix("order:")) == services.open_enrollment_token(buyer).token_hash
    services.open_enrollment_token(buyer).used_at = utcnow()  # scanned: no open code any more
    db.session.flush()
    assert client.post(url, json={"reason": "delivery"}, headers=headers).status_code == 404


def follower(phone: str, openid: str):
    member = factories.member(status="active", phone=phone)
    db.session.add(
        WechatIdentity(app_kind="official", app_id=APP_ID, openid=openid, member_id=member.id, following=True)
    )
    db.session.flush()
    return member


@pytest.fixture
def daytime():
    """10:00 in Shanghai (ticking): a tier upgrade goes out at once instead of waiting out quiet hours."""
    with at_daytime():
        yield


@pytest.mark.usefixtures("daytime")
def test_a_tier_upgrade_sends_a_template_message_and_the_delivery_report_is_recorded(client, app_ctx, fakes, post_dms):
    factories.staff(factories.dealer(code="D0101"), code="SA0101")
    follower("13900001234", "o-up")
    post_dms(dms_events.delivered("13900001234", factories.vin(), price_fen=20_000_000))
    [sent] = fakes.official_account.templates()
    assert (sent["touser"], sent["template_id"]) == ("o-up", "tier-upgrade-template")
    assert sent["data"]["keyword1"]["value"] == "金卡"
    notification = db.session.scalar(sa.select(Notification))
    assert (notification.kind, notification.status) == ("tier_upgrade", "sent")
    msgid = notification.wechat_msgid
    assert msgid is not None
    Callback(client).reply(event_xml("o-up", "TEMPLATESENDJOBFINISH", MsgID=msgid, Status="success"))
    db.session.refresh(notification)
    assert (notification.status, notification.delivery_status) == ("delivered", "success")


@pytest.mark.usefixtures("daytime")
def test_a_member_who_does_not_follow_gets_the_notice_by_sms_instead(app_ctx, fakes, post_dms):
    factories.staff(factories.dealer(code="D0101"), code="SA0101")
    factories.member(status="active", phone="13900004321")
    post_dms(dms_events.delivered("13900004321", factories.vin(), price_fen=20_000_000))
    notification = db.session.scalar(sa.select(Notification))
    assert (notification.status, notification.channel) == ("sent", "sms")
    assert fakes.official_account.templates() == []
    assert [call["phone"] for call in fakes.sms.sent()] == ["13900004321"]


@pytest.mark.usefixtures("daytime")
def test_wechat_saying_43004_falls_back_to_sms_instead_of_retrying(app_ctx, fakes, post_dms):
    from app.gateways import NOT_FOLLOWING, Refused

    factories.staff(factories.dealer(code="D0101"), code="SA0101")
    follower("13900004322", "o-left")  # unfollowed since; we have not heard yet
    fakes.official_account.fail_next("template.send", Refused("require subscribe", code=NOT_FOLLOWING))
    post_dms(dms_events.delivered("13900004322", factories.vin(), price_fen=20_000_000))
    notification = db.session.scalar(sa.select(Notification))
    assert (notification.status, notification.attempts, notification.channel) == ("sent", 1, "sms")
    assert [call["phone"] for call in fakes.sms.sent()] == ["13900004322"]


def test_a_member_who_withdrew_service_notifications_gets_no_template_message(app_ctx, fakes, post_dms):
    factories.staff(factories.dealer(code="D0101"), code="SA0101")
    member = follower("13900005678", "o-quiet")
    privacy.set_purposes(member, set())
    delivery = dms_events.delivered("13900005678", factories.vin(), price_fen=20_000_000)
    delivery["payload"]["buyer"]["consent"]["purposes"] = []  # no notifications at the dealer either
    post_dms(delivery)
    notification = db.session.scalar(sa.select(Notification))
    assert (notification.kind, notification.status) == ("tier_upgrade", "skipped")
    assert notification.error == "no consent to service notifications"
    assert fakes.official_account.templates() == []
