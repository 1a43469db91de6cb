"""The real WeChat Pay order gateway (``app.wechat.gateways.WeChatOrderPayments``, API v2 through
wechatpy) against WeChat Pay's documented request and response shapes, recorded with ``responses``:
unified order (JSAPI), the wx.requestPayment parameters, the payment notification's signature,
order query, close and refund, and what each kind of failure becomes."""

from __future__ import annotations

import datetime as dt

import pytest
import requests
import responses
from defusedxml.ElementTree import fromstring

from app.config import current_settings
from app.gateways import BadSignature, JsapiOrder, Refused, Unavailable
from app.wechat import pay_xml
from tests.wechat_helpers import use_real_wechat

PAY = "https://api.mch.weixin.qq.com"
ORDER = JsapiOrder(
    out_trade_no="ml0123456789abcdef0123456789abcd",
    openid="o-mini-payer",
    amount_fen=1990,
    description="洗车券 ×1",
    expires_at=dt.datetime(2026, 12, 2, 12, 15, tzinfo=dt.UTC),
    client_ip="10.0.0.1",
)


@pytest.fixture
def real(app, app_ctx, monkeypatch, http_mock):
    return use_real_wechat(app, monkeypatch).pay_orders


@pytest.fixture
def key():
    return current_settings().WECHAT_PAY_API_KEY


def answer(key: str, **fields: str) -> bytes:
    """WeChat Pay's answer, signed with the merchant key as WeChat signs it."""
    return pay_xml.signed_xml({"return_code": "SUCCESS", "return_msg": "OK", **fields}, key)


def sent(call) -> dict[str, str]:
    return {child.tag: child.text or "" for child in fromstring(call.request.body)}


def test_a_jsapi_order_is_created_for_the_mini_app_payer_and_signed(real, http_mock, key):
    unified = http_mock.add(
        responses.POST,
        f"{PAY}/pay/unifiedorder",
        body=answer(key, result_code="SUCCESS", trade_type="JSAPI", prepay_id="wx201410272009395522657a690389285100"),
    )
    assert real.create_jsapi_order(ORDER) == "wx201410272009395522657a690389285100"
    body = sent(unified.calls[0])
    assert body["appid"] == current_settings().MINIAPP_APP_ID  # the mini-app's, not the service account's
    assert (body["trade_type"], body["openid"], body["out_trade_no"]) == ("JSAPI", "o-mini-payer", ORDER.out_trade_no)
    assert (body["total_fee"], body["spbill_create_ip"], body["mch_id"]) == ("1990", "10.0.0.1", "1900000109")
    assert body["time_expire"] == "20261202201500"  # Asia/Shanghai wall time
    assert body["notify_url"].endswith("/api/v1/wechat-pay/notifications")
    assert body["sign"] == pay_xml.sign(body, key)


def test_the_request_payment_parameters_are_signed_for_the_mini_app(real, key):
    params = real.jsapi_params("wx201410272009395522657a690389285100")
    assert params["appId"] == current_settings().MINIAPP_APP_ID
    assert params["package"] == "prepay_id=wx201410272009395522657a690389285100"
    assert params["paySign"] == pay_xml.sign({k: v for k, v in params.items() if k != "paySign"}, key)


@pytest.mark.parametrize(
    ("body", "error", "code"),
    [
        ({"result_code": "FAIL", "err_code": "SYSTEMERROR", "err_code_des": "系统错误"}, Unavailable, "SYSTEMERROR"),
        ({"result_code": "FAIL", "err_code": "ORDERPAID", "err_code_des": "商户订单已支付"}, Refused, "ORDERPAID"),
        ({"result_code": "FAIL", "err_code": "INVALID_REQUEST", "err_code_des": "重复"}, Refused, "INVALID_REQUEST"),
    ],
)  # fmt: skip
def test_unified_order_failures_say_retry_or_refused(real, http_mock, key, body, error, code):
    http_mock.add(responses.POST, f"{PAY}/pay/unifiedorder", body=answer(key, **body))
    with pytest.raises(error) as raised:
        real.create_jsapi_order(ORDER)
    assert raised.value.code == code


def test_no_answer_or_a_fail_return_code_is_unavailable(real, http_mock, key):
    http_mock.add(responses.POST, f"{PAY}/pay/unifiedorder", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(Unavailable):
        real.create_jsapi_order(ORDER)
    http_mock.replace(
        responses.POST,
        f"{PAY}/pay/unifiedorder",
        body=pay_xml.signed_xml({"return_code": "FAIL", "return_msg": "签名错误"}, key),
    )
    with pytest.raises(Unavailable):
        real.create_jsapi_order(ORDER)


def notification(key: str, **changes: str) -> bytes:
    fields = {
        "appid": "wxminiapptest00001",
        "mch_id": "1900000109",
        "nonce_str": "5d2b6c2a8db53831f7eda20af46e531c",
        "result_code": "SUCCESS",
        "return_code": "SUCCESS",
        "openid": "o-mini-payer",
        "trade_type": "JSAPI",
        "bank_type": "CMC",
        "total_fee": "1990",
        "cash_fee": "1990",
        "fee_type": "CNY",
        "transaction_id": "1004400740201409030005092168",
        "out_trade_no": ORDER.out_trade_no,
        "time_end": "20261202201012",
    }
    return pay_xml.signed_xml(fields | changes, key)


def test_a_payment_notification_is_verified_and_read(real, key):
    paid = real.parse_notification(notification(key))
    assert paid.paid and (paid.out_trade_no, paid.amount_fen) == (ORDER.out_trade_no, 1990)
    assert paid.transaction_id == "1004400740201409030005092168"
    assert paid.paid_at == dt.datetime(2026, 12, 2, 12, 10, 12, tzinfo=dt.UTC)
    tampered = notification(key).replace(b"<total_fee>1990</total_fee>", b"<total_fee>1</total_fee>")
    for bad in (tampered, notification("another-merchant-key-0123456789ab"), b"not xml", b"<html/>"):
        with pytest.raises(BadSignature):
            real.parse_notification(bad)


def test_order_query_answers_paid_unpaid_or_unknown(real, http_mock, key):
    query = http_mock.add(
        responses.POST,
        f"{PAY}/pay/orderquery",
        body=answer(
            key,
            result_code="SUCCESS",
            trade_state="SUCCESS",
            out_trade_no=ORDER.out_trade_no,
            total_fee="1990",
            transaction_id="1004400740201409030005092168",
            time_end="20261202201012",
        ),
    )
    paid = real.query_order(ORDER.out_trade_no)
    assert paid.paid and paid.amount_fen == 1990
    assert sent(query.calls[0])["out_trade_no"] == ORDER.out_trade_no
    http_mock.replace(
        responses.POST,
        f"{PAY}/pay/orderquery",
        body=answer(
            key, result_code="SUCCESS", trade_state="NOTPAY", out_trade_no=ORDER.out_trade_no, total_fee="1990"
        ),
    )
    assert real.query_order(ORDER.out_trade_no).state == "NOTPAY"
    http_mock.replace(
        responses.POST,
        f"{PAY}/pay/orderquery",
        body=answer(key, result_code="FAIL", err_code="ORDERNOTEXIST", err_code_des="此交易订单号不存在"),
    )
    assert real.query_order(ORDER.out_trade_no).state is None


def test_closing_a_paid_order_answers_the_paid_order(real, http_mock, key):
    http_mock.add(responses.POST, f"{PAY}/pay/closeorder", body=answer(key, result_code="SUCCESS"))
    assert real.close_order(ORDER.out_trade_no).state == "CLOSED"
    http_mock.replace(
        responses.POST, f"{PAY}/pay/closeorder", body=answer(key, result_code="FAIL", err_code="ORDERPAID")
    )
    http_mock.add(
        responses.POST,
        f"{PAY}/pay/orderquery",
        body=answer(
            key, result_code="SUCCESS", trade_state="SUCCESS", out_trade_no=ORDER.out_trade_no, total_fee="1990"
        ),
    )
    assert real.close_order(ORDER.out_trade_no).paid
    http_mock.replace(
        responses.POST, f"{PAY}/pay/closeorder", body=answer(key, result_code="FAIL", err_code="ORDERCLOSED")
    )
    assert real.close_order(ORDER.out_trade_no).state == "CLOSED"


def test_a_refund_names_the_order_and_its_refund_number(real, http_mock, key):
    refund = http_mock.add(
        responses.POST,
        f"{PAY}/secapi/pay/refund",
        body=answer(key, result_code="SUCCESS", refund_id="50000408942018111907145868882", refund_fee="1990"),
    )
    assert real.refund(ORDER.out_trade_no, "rf" + ORDER.out_trade_no, 1990, 1990) == "50000408942018111907145868882"
    body = sent(refund.calls[0])
    assert (body["out_trade_no"], body["out_refund_no"]) == (ORDER.out_trade_no, "rf" + ORDER.out_trade_no)
    assert (body["total_fee"], body["refund_fee"]) == ("1990", "1990")
    assert body["notify_url"].endswith("/api/v1/wechat-pay/refund-notifications")  # beside the payment notices
    http_mock.replace(
        responses.POST, f"{PAY}/secapi/pay/refund", body=answer(key, result_code="FAIL", err_code="NOTENOUGH")
    )
    with pytest.raises(Unavailable):  # the merchant account is short: retried later, same refund number
        real.refund(ORDER.out_trade_no, "rf" + ORDER.out_trade_no, 1990, 1990)


def refund_fields(**overrides: str) -> dict[str, str]:
    """A refund notification's req_info as WeChat Pay documents it (退款结果通知)."""
    return {
        "transaction_id": "4200000208201812034435765656",
        "out_trade_no": ORDER.out_trade_no,
        "refund_id": "50000408942018111907145868882",
        "out_refund_no": "rf" + ORDER.out_trade_no,
        "total_fee": "1990",
        "refund_fee": "1990",
        "settlement_refund_fee": "1990",
        "refund_status": "SUCCESS",
        "success_time": "2026-12-03 16:05:09",
        "refund_recv_accout": "支付用户零钱",
        "refund_account": "REFUND_SOURCE_RECHARGE_FUNDS",
        "refund_request_source": "API",
    } | overrides


def test_a_refund_notification_is_decrypted_with_the_merchant_key_for_our_app_and_merchant(real, key):
    app_id = current_settings().MINIAPP_APP_ID
    body = pay_xml.encrypted_refund_notification(refund_fields(), key, app_id=app_id, mch_id="1900000109")
    result = real.parse_refund_notification(body)
    assert (result.out_trade_no, result.out_refund_no, result.state) == (
        ORDER.out_trade_no,
        "rf" + ORDER.out_trade_no,
        "SUCCESS",
    )
    assert (result.refund_fen, result.refund_id) == (1990, "50000408942018111907145868882")
    assert result.refunded_at == dt.datetime(2026, 12, 3, 8, 5, 9, tzinfo=dt.UTC)  # Beijing time in the message
    for forged in (
        pay_xml.encrypted_refund_notification(refund_fields(), "x" * 32, app_id=app_id, mch_id="1900000109"),
        pay_xml.encrypted_refund_notification(refund_fields(), key, app_id="wx-another-app", mch_id="1900000109"),
        pay_xml.encrypted_refund_notification(
            refund_fields(refund_fee="lots"), key, app_id=app_id, mch_id="1900000109"
        ),
        b"<xml><return_code>FAIL</return_code><return_msg>x</return_msg></xml>",
    ):
        with pytest.raises(BadSignature):
            real.parse_refund_notification(forged)


def test_a_refund_query_reads_the_first_refund_of_the_answer(real, http_mock, key):
    query = http_mock.add(
        responses.POST,
        f"{PAY}/pay/refundquery",
        body=answer(
            key,
            result_code="SUCCESS",
            out_trade_no=ORDER.out_trade_no,
            refund_count="1",
            out_refund_no_0="rf" + ORDER.out_trade_no,
            refund_id_0="50000408942018111907145868882",
            refund_fee_0="1990",
            refund_status_0="CHANGE",
            refund_recv_accout_0="招商银行信用卡0403",
        ),
    )
    result = real.query_refund("rf" + ORDER.out_trade_no)
    assert (result.out_trade_no, result.state, result.refund_fen, result.refunded_at) == (
        ORDER.out_trade_no,
        "CHANGE",
        1990,
        None,
    )
    assert sent(query.calls[0])["out_refund_no"] == "rf" + ORDER.out_trade_no
    http_mock.replace(
        responses.POST, f"{PAY}/pay/refundquery", body=answer(key, result_code="FAIL", err_code="REFUNDNOTEXIST")
    )
    assert real.query_refund("rf" + ORDER.out_trade_no).state is None
    http_mock.replace(
        responses.POST, f"{PAY}/pay/refundquery", body=answer(key, result_code="FAIL", err_code="SYSTEMERROR")
    )
    with pytest.raises(Unavailable):
        real.query_refund("rf" + ORDER.out_trade_no)
