"""The real gateways (``app.wechat.gateways``) against WeChat's documented request and response
shapes, recorded with ``responses``: what we send, what we make of every kind of answer."""

from __future__ import annotations

import json

import pytest
import requests
import responses
from defusedxml.ElementTree import fromstring

from app.gateways import (
    NOT_FOLLOWING,
    PaymentRefused,
    RedPacketOrder,
    Refused,
    Unavailable,
)
from app.wechat.gateways import WeChatMiniApp, WeChatOfficialAccount, WeChatPayments
from tests.wechat_helpers import APP_ID, use_real_wechat

API = "https://api.weixin.qq.com"
PAY = "https://api.mch.weixin.qq.com/mmpaymkttransfers"
ORDER = RedPacketOrder(
    bill_no="1900000109202612010000000042",
    openid="o-rp",
    amount_fen=500,
    send_name="一汽大众",
    act_name="春季活动",
    wishing="祝您用车愉快",
    remark="扫码领取",
    client_ip="10.0.0.1",
)


@pytest.fixture
def real(app, app_ctx, monkeypatch, http_mock):
    gateways = use_real_wechat(app, monkeypatch)
    http_mock.add(responses.POST, f"{API}/cgi-bin/stable_token", json={"access_token": "TOKEN", "expires_in": 7200})
    return gateways


def body(call) -> dict:
    return json.loads(call.request.body)


def pay_xml(**fields: str) -> str:
    return "<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items()) + "</xml>"


def test_the_configured_gateways_are_the_real_ones(real):
    assert isinstance(real.official_account, WeChatOfficialAccount)
    assert isinstance(real.mini_app, WeChatMiniApp)
    assert isinstance(real.payments, WeChatPayments)


def test_customer_messages_and_templates_have_wechats_shape(real, http_mock):
    custom = http_mock.add(responses.POST, f"{API}/cgi-bin/message/custom/send", json={"errcode": 0, "errmsg": "ok"})
    template = http_mock.add(
        responses.POST,
        f"{API}/cgi-bin/message/template/send",
        json={"errcode": 0, "errmsg": "ok", "msgid": 200228332},
    )
    real.official_account.send_text("o-1", "你好")
    real.official_account.send_articles(
        "o-1", [{"title": "T", "description": "D", "url": "https://m.example.com/x", "image": "https://i/1.png"}]
    )
    msgid = real.official_account.send_template("o-1", "tpl-1", {"first": {"value": "升级"}}, url="https://u")
    assert body(custom.calls[0]) == {"touser": "o-1", "msgtype": "text", "text": {"content": "你好"}}
    assert body(custom.calls[1])["news"]["articles"] == [
        {"title": "T", "description": "D", "url": "https://m.example.com/x", "picurl": "https://i/1.png"}
    ]
    assert custom.calls[0].request.url.endswith("access_token=TOKEN")
    assert body(template.calls[0]) == {
        "touser": "o-1",
        "template_id": "tpl-1",
        "url": "https://u",
        "data": {"first": {"value": "升级"}},
    }
    assert msgid == 200228332


def test_a_refusal_keeps_wechats_code_and_no_answer_is_unavailable(real, http_mock):
    http_mock.add(
        responses.POST,
        f"{API}/cgi-bin/message/template/send",
        json={"errcode": 43004, "errmsg": "require subscribe hint"},
    )
    with pytest.raises(Refused) as refused:
        real.official_account.send_template("o-gone", "tpl-1", {})
    assert refused.value.code == NOT_FOLLOWING
    http_mock.add(
        responses.POST, f"{API}/cgi-bin/message/custom/send", body=requests.ConnectionError("connection reset")
    )
    with pytest.raises(Unavailable):
        real.official_account.send_text("o-1", "hi")


def test_qr_codes_are_string_scenes_temporary_or_permanent(real, http_mock):
    create = http_mock.add(
        responses.POST,
        f"{API}/cgi-bin/qrcode/create",
        json={"ticket": "gQH47joAAAAAAAAAASxodHRwOi8v", "expire_seconds": 2592000, "url": "http://weixin.qq.com/q/kZ"},
    )
    ticket = real.official_account.create_qr_code("adv:SA7", expire_seconds=2592000)
    assert body(create.calls[0]) == {
        "expire_seconds": 2592000,
        "action_name": "QR_STR_SCENE",
        "action_info": {"scene": {"scene_str": "adv:SA7"}},
    }
    assert (ticket.url, ticket.expire_seconds) == ("http://weixin.qq.com/q/kZ", 2592000)
    http_mock.replace(
        responses.POST, f"{API}/cgi-bin/qrcode/create", json={"ticket": "P", "url": "http://weixin.qq.com/q/p"}
    )
    permanent = real.official_account.create_qr_code("camp:SPRING", expire_seconds=None)
    assert body(http_mock.calls[-1]) == {
        "action_name": "QR_LIMIT_STR_SCENE",
        "action_info": {"scene": {"scene_str": "camp:SPRING"}},
    }
    assert permanent.expire_seconds is None


def test_a_followers_unionid_and_the_menu(real, http_mock):
    http_mock.add(
        responses.GET,
        f"{API}/cgi-bin/user/info",
        json={"subscribe": 1, "openid": "o-1", "language": "zh_CN", "unionid": "oTnlcv-union"},
    )
    menu = http_mock.add(responses.POST, f"{API}/cgi-bin/menu/create", json={"errcode": 0, "errmsg": "ok"})
    assert real.official_account.follower_unionid("o-1") == "oTnlcv-union"
    assert "openid=o-1" in http_mock.calls[-1].request.url
    real.official_account.create_menu({"button": [{"type": "click", "name": "积分", "key": "my_points"}]})
    assert body(menu.calls[0])["button"][0]["key"] == "my_points"


def test_jscode2session_is_called_without_an_access_token(real, http_mock):
    session = http_mock.add(
        responses.GET,
        f"{API}/sns/jscode2session",
        json={"openid": "oMini", "session_key": "tiihtNczf5v6AKRyjwEUhQ==", "unionid": "oUnion"},
    )
    signed = real.mini_app.code_to_session("081abc")
    assert (signed.openid, signed.session_key, signed.unionid) == ("oMini", "tiihtNczf5v6AKRyjwEUhQ==", "oUnion")
    url = session.calls[0].request.url
    assert "js_code=081abc" in url and "grant_type=authorization_code" in url and "appid=" in url
    assert "access_token" not in url


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"errcode": 40029, "errmsg": "invalid code"}, Refused),
        ({"errcode": 45011, "errmsg": "api minute-quota reach limit"}, Refused),
        ({"errcode": -1, "errmsg": "system error"}, Unavailable),
        ({"session_key": "only"}, Unavailable),
    ],
)
def test_jscode2session_answers_become_refused_or_unavailable(real, http_mock, answer, error):
    http_mock.add(responses.GET, f"{API}/sns/jscode2session", json=answer)
    with pytest.raises(error):
        real.mini_app.code_to_session("081abc")


def test_the_shared_phone_number(real, http_mock):
    phone = http_mock.add(
        responses.POST,
        f"{API}/wxa/business/getuserphonenumber",
        json={
            "errcode": 0,
            "errmsg": "ok",
            "phone_info": {
                "phoneNumber": "13800138000",
                "purePhoneNumber": "13800138000",
                "countryCode": "86",
                "watermark": {"timestamp": 1637744274, "appid": "wxminiapptest00001"},
            },
        },
    )
    shared = real.mini_app.phone_number("e31968a7f94cc5ee25fafc2aef2773f0bb8c3937b22520eb8ee345274d00c144")
    assert (shared.phone, shared.country_code) == ("13800138000", "86")
    assert body(phone.calls[0]) == {"code": "e31968a7f94cc5ee25fafc2aef2773f0bb8c3937b22520eb8ee345274d00c144"}
    http_mock.replace(
        responses.POST, f"{API}/wxa/business/getuserphonenumber", json={"errcode": 40029, "errmsg": "invalid code"}
    )
    with pytest.raises(Refused) as refused:
        real.mini_app.phone_number("used")
    assert refused.value.code == 40029


def test_a_red_packet_is_sent_with_the_bill_number_and_signed(real, http_mock):
    send = http_mock.add(
        responses.POST,
        f"{PAY}/sendredpack",
        body=pay_xml(
            return_code="SUCCESS",
            result_code="SUCCESS",
            mch_billno=ORDER.bill_no,
            send_listid="100000000020150520314766074200",
            total_amount="500",
        ),
    )
    assert real.payments.send_red_packet(ORDER) == "100000000020150520314766074200"
    sent = {child.tag: child.text for child in fromstring(send.calls[0].request.body)}
    assert sent["mch_billno"] == ORDER.bill_no and sent["re_openid"] == "o-rp"
    assert (sent["total_amount"], sent["total_num"], sent["client_ip"]) == ("500", "1", "10.0.0.1")
    assert sent["wxappid"] == APP_ID and sent["mch_id"] == "1900000109" and sent["sign"]


@pytest.mark.parametrize(
    ("answer", "error", "code"),
    [
        (pay_xml(return_code="SUCCESS", result_code="FAIL", err_code="SYSTEMERROR", err_code_des="系统繁忙"),
         Unavailable, "SYSTEMERROR"),
        (pay_xml(return_code="SUCCESS", result_code="FAIL", err_code="NOTENOUGH", err_code_des="帐号余额不足"),
         PaymentRefused, "NOTENOUGH"),
        (pay_xml(return_code="FAIL", return_msg="签名错误"), Unavailable, None),
        (requests.exceptions.ReadTimeout("read timed out"), Unavailable, None),
    ],
)  # fmt: skip
def test_red_packet_answers_say_retry_with_the_same_bill_or_give_up(real, http_mock, answer, error, code):
    http_mock.add(responses.POST, f"{PAY}/sendredpack", body=answer)
    with pytest.raises(error) as raised:
        real.payments.send_red_packet(ORDER)
    if code:
        assert raised.value.code == code


def test_red_packet_status_and_a_bill_wechat_never_saw(real, http_mock):
    http_mock.add(
        responses.POST,
        f"{PAY}/gethbinfo",
        body=pay_xml(return_code="SUCCESS", result_code="SUCCESS", mch_billno=ORDER.bill_no, status="RECEIVED"),
    )
    assert real.payments.red_packet_status(ORDER.bill_no) == "RECEIVED"
    assert {c.tag: c.text for c in fromstring(http_mock.calls[-1].request.body)}["mch_billno"] == ORDER.bill_no
    http_mock.replace(
        responses.POST,
        f"{PAY}/gethbinfo",
        body=pay_xml(
            return_code="SUCCESS", result_code="FAIL", err_code="NOT_FOUND", err_code_des="指定单号数据不存在"
        ),
    )
    assert real.payments.red_packet_status(ORDER.bill_no) is None
