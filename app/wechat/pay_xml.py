"""WeChat Pay API v2 messages: signed XML in and out (wechatpy's signing), shared by the real
order gateway (``app.wechat.gateways``) and its sandbox (``app.wechat.pay_sandbox``), so both
sign and verify the same way.

Incoming XML is parsed with defusedxml (no entities, no DTD) into a flat dict of strings, the way
WeChat sends it; the signature (MD5, or HMAC-SHA256 when ``sign_type`` says so) is compared in
constant time.
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import hmac
import secrets
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from wechatpy.crypto import RefundCrypto
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac, dict_to_xml

from app.core.clock import BUSINESS_TZ
from app.gateways import BadSignature, PaidOrder, RefundResult

#: WeChat's time format (Asia/Shanghai wall time): time_end, time_expire.
TIME_FORMAT = "%Y%m%d%H%M%S"


def sign(fields: dict[str, Any], key: str) -> str:
    values = {k: v for k, v in fields.items() if k != "sign" and v not in (None, "")}
    if fields.get("sign_type") == "HMAC-SHA256":
        return calculate_signature_hmac(values, key)
    return calculate_signature(values, key)


def signed_xml(fields: dict[str, Any], key: str) -> bytes:
    values = {k: v for k, v in fields.items() if v not in (None, "")}
    return dict_to_xml(values, sign(values, key)).encode()


def parse(body: bytes, root_tag: str = "xml") -> dict[str, str]:
    """A flat ``<xml>`` document into a dict; ``BadSignature`` when it is not one."""
    try:
        root = fromstring(body)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise BadSignature("not WeChat Pay XML", code="BAD_XML") from exc
    if root.tag != root_tag:
        raise BadSignature("not WeChat Pay XML", code="BAD_XML")
    return {child.tag: (child.text or "") for child in root}


def verified(body: bytes, key: str) -> dict[str, str]:
    """The fields of a signed message, or ``BadSignature``."""
    fields = parse(body)
    given = fields.get("sign", "")
    if not given or not hmac.compare_digest(given.upper(), sign(fields, key)):
        raise BadSignature("signature does not verify", code="SIGN_ERROR")
    return fields


def wechat_time(moment: dt.datetime) -> str:
    return moment.astimezone(BUSINESS_TZ).strftime(TIME_FORMAT)


def from_wechat_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=BUSINESS_TZ).astimezone(dt.UTC)


def paid_order(fields: dict[str, Any], *, state: str | None = None) -> PaidOrder:
    """A notification's or an order query's fields in our terms (a notification has no
    ``trade_state``: its ``result_code`` SUCCESS means paid)."""
    trade_state = (
        state or fields.get("trade_state") or ("SUCCESS" if fields.get("result_code") == "SUCCESS" else "PAYERROR")
    )
    return PaidOrder(
        out_trade_no=str(fields.get("out_trade_no", "")),
        state=trade_state,
        amount_fen=int(fields.get("total_fee") or 0),
        transaction_id=fields.get("transaction_id") or None,
        paid_at=from_wechat_time(fields.get("time_end")),
    )


#: WeChat's refund time format (Asia/Shanghai wall time): success_time, refund_success_time_0.
REFUND_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def refund_time(moment: dt.datetime) -> str:
    return moment.astimezone(BUSINESS_TZ).strftime(REFUND_TIME_FORMAT)


def _refund_crypto(key: str) -> RefundCrypto:
    """AES-256-ECB keyed with the lowercase hex MD5 of the merchant key, as WeChat encrypts ``req_info``."""
    return RefundCrypto(hashlib.md5(key.encode()).hexdigest().encode())  # noqa: S324 - WeChat's key derivation


def refund_notification(body: bytes, key: str, *, app_id: str, mch_id: str) -> RefundResult:
    """A refund notification's decrypted ``req_info``; ``BadSignature`` when the message is not for
    this merchant and app or does not decrypt to WeChat's refund XML (the notification carries no
    signature: only the merchant key can produce a ``req_info`` that decrypts to it)."""
    outer = parse(body)
    if outer.get("return_code") != "SUCCESS" or not outer.get("req_info"):
        raise BadSignature("not a refund notification", code="BAD_XML")
    if outer.get("appid") != app_id or outer.get("mch_id") != mch_id:
        raise BadSignature("not for this merchant", code="WRONG_MERCHANT")
    try:
        inner = _refund_crypto(key).decrypt(outer["req_info"])
    except (ValueError, binascii.Error, IndexError) as exc:
        raise BadSignature("req_info does not decrypt", code="DECRYPT_ERROR") from exc
    try:
        return refund_result(parse(inner, root_tag="root"))
    except ValueError as exc:  # a number or a time that is not one
        raise BadSignature("malformed refund fields", code="BAD_XML") from exc


def encrypted_refund_notification(fields: dict[str, Any], key: str, *, app_id: str, mch_id: str) -> bytes:
    """The notification WeChat would POST for a refund (the sandbox and the tests)."""
    inner = "".join(f"<{name}><![CDATA[{value}]]></{name}>" for name, value in fields.items() if value is not None)
    req_info = _refund_crypto(key).encrypt(f"<root>{inner}</root>").decode()
    outer = {
        "return_code": "SUCCESS",
        "appid": app_id,
        "mch_id": mch_id,
        "nonce_str": secrets.token_hex(16),
        "req_info": req_info,
    }
    return ("<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in outer.items()) + "</xml>").encode()


def refund_result(fields: dict[str, Any], suffix: str = "") -> RefundResult:
    """A refund notification's fields (or a refund query's, whose refund fields end in ``_0``)."""
    success_time = fields.get(f"success_time{suffix}") or fields.get(f"refund_success_time{suffix}")
    refunded_at = None
    if success_time:
        refunded_at = (
            dt.datetime.strptime(success_time, REFUND_TIME_FORMAT).replace(tzinfo=BUSINESS_TZ).astimezone(dt.UTC)
        )
    state = fields.get(f"refund_status{suffix}") or None
    return RefundResult(
        out_trade_no=str(fields.get("out_trade_no", "")),
        out_refund_no=str(fields.get(f"out_refund_no{suffix}", "")),
        state=state.upper() if state else None,
        refund_fen=int(fields.get(f"refund_fee{suffix}") or 0),
        refund_id=fields.get(f"refund_id{suffix}") or None,
        refunded_at=refunded_at,
    )


ACK = b"<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"


def refusal(message: str) -> bytes:
    """What WeChat is told when a notification is not taken (it retries later)."""
    return (
        f"<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[{message}]]></return_msg></xml>".encode()
    )
