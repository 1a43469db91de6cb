"""The sending gateways against recorded shapes (``responses``): Aliyun SMS ``SendSms`` (signed
GET, ``{"Code": "OK", "BizId": …}``), the mini-app's ``subscribeMessage.send``, and a token WeChat
keeps rejecting (refreshed once, then the error); the SMS settings and their production refusals."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import responses

from app.config import ConfigError, load_settings, settings_of
from app.gateways import NO_SUBSCRIPTION_GRANT, Refused, Unavailable
from app.gateways.aliyun_sms import AliyunSms, signature
from app.gateways.fakes import FakeSms
from app.wechat import clients
from app.wechat.gateways import for_settings
from tests.test_config import ALL_PRODUCTION
from tests.wechat_helpers import use_real_wechat

SMS_API = "https://dysmsapi.aliyuncs.com"
WECHAT_API = "https://api.weixin.qq.com/cgi-bin"


def test_the_signature_is_aliyuns_documented_example():
    """The example of Aliyun's "HTTP protocol and signature" page for SendSms, byte for byte."""
    params = {
        "AccessKeyId": "testId",
        "Action": "SendSms",
        "Format": "XML",
        "OutId": "123",
        "PhoneNumbers": "15300000001",
        "RegionId": "cn-hangzhou",
        "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0",
        "TemplateCode": "SMS_71390007",
        "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z",
        "Version": "2017-05-25",
    }
    assert signature(params, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def sms() -> AliyunSms:
    return AliyunSms(SMS_API, "LTAI-test", "secret-test", "一汽大众会员")


def test_send_sms_has_aliyuns_shape_and_returns_the_biz_id(http_mock):
    call = http_mock.add(
        responses.GET,
        f"{SMS_API}/",
        json={
            "Message": "OK",
            "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990",
            "BizId": "900619746936498440^0",
            "Code": "OK",
        },
    )
    assert sms().send("13800138000", "SMS_153055065", {"points": "1,000"}, out_id="42") == "900619746936498440^0"
    query = {k: v[0] for k, v in parse_qs(urlparse(call.calls[0].request.url).query).items()}
    assert {k: query[k] for k in ("Action", "Version", "PhoneNumbers", "SignName", "TemplateCode", "OutId")} == {
        "Action": "SendSms",
        "Version": "2017-05-25",
        "PhoneNumbers": "13800138000",
        "SignName": "一汽大众会员",
        "TemplateCode": "SMS_153055065",
        "OutId": "42",
    }
    assert json.loads(query["TemplateParam"]) == {"points": "1,000"}
    signed = query.pop("Signature")
    assert signed == signature(query, "secret-test")  # the signature covers exactly what was sent
    assert dt.datetime.strptime(query["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("answer", "error", "code"),
    [
        ({"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"}, Refused, "isv.MOBILE_NUMBER_ILLEGAL"),
        (
            {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控"},
            Unavailable,
            "isv.BUSINESS_LIMIT_CONTROL",
        ),
        ({"Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "模板不合法"}, Refused, "isv.SMS_TEMPLATE_ILLEGAL"),
    ],
)
def test_sms_errors_keep_the_providers_code(http_mock, answer, error, code):
    http_mock.add(responses.GET, f"{SMS_API}/", json={"RequestId": "x", **answer})
    with pytest.raises(error) as raised:
        sms().send("13800138000", "SMS_1", {})
    assert raised.value.code == code


def test_no_answer_from_the_sms_provider_is_unavailable(http_mock):
    http_mock.add(responses.GET, f"{SMS_API}/", body=requests.ConnectionError("reset"))
    with pytest.raises(Unavailable):
        sms().send("13800138000", "SMS_1", {})


@pytest.fixture
def real(app, app_ctx, monkeypatch, http_mock):
    gateways = use_real_wechat(app, monkeypatch)
    http_mock.add(responses.POST, f"{WECHAT_API}/stable_token", json={"access_token": "TOKEN", "expires_in": 7200})
    yield gateways
    clients.forget_clients(app)


def test_subscribe_messages_have_wechats_shape(real, http_mock):
    send = http_mock.add(
        responses.POST, f"{WECHAT_API}/message/subscribe/send", json={"errcode": 0, "errmsg": "ok", "msgid": 3164417409}
    )
    data = {"thing1": {"value": "积分即将过期"}, "time3": {"value": "2026-12-31"}}
    assert real.mini_app.send_subscribe("m-1", "tpl-9", data, page="pages/points/index") == 3164417409
    assert json.loads(send.calls[0].request.body) == {
        "touser": "m-1",
        "template_id": "tpl-9",
        "data": data,
        "lang": "zh_CN",
        "page": "pages/points/index",
    }
    assert send.calls[0].request.url.endswith("access_token=TOKEN")


def test_no_grant_left_is_refused_with_43101(real, http_mock):
    http_mock.add(
        responses.POST,
        f"{WECHAT_API}/message/subscribe/send",
        json={"errcode": 43101, "errmsg": "user refuse to accept the msg"},
    )
    with pytest.raises(Refused) as raised:
        real.mini_app.send_subscribe("m-1", "tpl-9", {})
    assert raised.value.code == NO_SUBSCRIPTION_GRANT


def test_a_token_rejected_again_after_one_refresh_is_an_error_not_a_loop(real, http_mock):
    send = http_mock.add(
        responses.POST, f"{WECHAT_API}/message/template/send", json={"errcode": 40001, "errmsg": "invalid credential"}
    )
    with pytest.raises(Refused) as raised:
        real.official_account.send_template("o-1", "tpl", {})
    assert raised.value.code == 40001
    assert send.call_count == 2  # the call, then one retry with a fresh token
    refreshes = [c for c in http_mock.calls if c.request.url.endswith("/stable_token")]
    assert [json.loads(c.request.body)["force_refresh"] for c in refreshes] == [False, True]
    http_mock.replace(
        responses.POST, f"{WECHAT_API}/message/template/send", json={"errcode": 0, "errmsg": "ok", "msgid": 7}
    )
    assert real.official_account.send_template("o-1", "tpl", {}) == 7  # the next call is not refused by memory


def test_sms_settings_choose_the_gateway(app):
    settings = settings_of(app)
    assert isinstance(for_settings(dataclasses.replace(settings, SMS_API_BASE="sandbox")).sms, FakeSms)
    assert for_settings(dataclasses.replace(settings, SMS_API_BASE="")).sms is None
    real = for_settings(
        dataclasses.replace(settings, SMS_API_BASE=SMS_API, SMS_ACCESS_KEY_ID="id", SMS_SIGN_NAME="签名")
    ).sms
    assert isinstance(real, AliyunSms) and real.api_base == SMS_API


def test_production_refuses_the_logging_sms_gateway_and_a_real_one_without_keys():
    assert load_settings(ALL_PRODUCTION).SMS_API_BASE == ""  # off unless configured
    with pytest.raises(ConfigError, match="LOYALTY_SMS_API_BASE is the sandbox"):
        load_settings({**ALL_PRODUCTION, "LOYALTY_SMS_API_BASE": "sandbox"})
    with pytest.raises(ConfigError) as raised:
        load_settings({**ALL_PRODUCTION, "LOYALTY_SMS_API_BASE": SMS_API, "LOYALTY_SMS_ACCESS_KEY_ID": "LTAI5t"})
    assert "LOYALTY_SMS_ACCESS_KEY_SECRET is missing" in str(raised.value)
    assert "LOYALTY_SMS_SIGN_NAME is missing" in str(raised.value)
    assert "LOYALTY_SMS_ACCESS_KEY_ID is missing" not in str(raised.value)
    assert "LOYALTY_SMS_REPORT_SECRET is missing" in str(raised.value)  # its status reports' address
    full = {
        **ALL_PRODUCTION,
        "LOYALTY_SMS_API_BASE": SMS_API,
        "LOYALTY_SMS_ACCESS_KEY_ID": "LTAI5t",
        "LOYALTY_SMS_ACCESS_KEY_SECRET": "s" * 30,
        "LOYALTY_SMS_SIGN_NAME": "一汽大众会员",
        "LOYALTY_SMS_REPORT_SECRET": "r" * 31,
    }
    with pytest.raises(ConfigError, match="LOYALTY_SMS_REPORT_SECRET is shorter than 32 bytes"):
        load_settings(full)
    full["LOYALTY_SMS_REPORT_SECRET"] = "r" * 32
    assert load_settings(full).SMS_SIGN_NAME == "一汽大众会员"
    # while the address given to Aliyun changes: the new and the old secret, each a full-strength one
    full["LOYALTY_SMS_REPORT_SECRET"] = f"{'n' * 32}, {'r' * 32}"
    assert load_settings(full).sms_report_secrets == ["n" * 32, "r" * 32]
    with pytest.raises(ConfigError, match="LOYALTY_SMS_REPORT_SECRET is shorter than 32 bytes"):
        load_settings({**full, "LOYALTY_SMS_REPORT_SECRET": f"{'n' * 32},short"})
    development = load_settings({"LOYALTY_ENV": "development"}).SMS_REPORT_SECRET
    with pytest.raises(ConfigError, match="LOYALTY_SMS_REPORT_SECRET is the development default"):
        load_settings({**full, "LOYALTY_SMS_REPORT_SECRET": f"{'n' * 32},{development}"})
    assert load_settings({"LOYALTY_ENV": "development"}).SMS_API_BASE == "sandbox"
