"""WeChat Pay API v2 messages: signed XML in and out (wechatpy's signing), shared by the real
order gateway (``app.wechat.gateways``) and its sandbox (``app.wechat.pay_sandbox``), so both
sign and verify the same way.

Incoming XML is parsed with defusedxml (no entities, no DTD) into a flat dict of strings, the way
WeChat sends it; the signature (MD5, or HMAC-SHA256 when ``sign_type`` says so) is compared in
constant time.
"""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac, dict_to_xml

from app.core.clock import BUSINESS_TZ
from app.gateways import BadSignature, PaidOrder

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


def parse(body: bytes) -> dict[str, str]:
    """A flat ``<xml>`` document into a dict; ``BadSignature`` when it is not one."""
    try:
        root = fromstring(body)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise BadSignature("not WeChat Pay XML", code="BAD_XML") from exc
    if root.tag != "xml":
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


ACK = b"<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"


def refusal(message: str) -> bytes:
    """What WeChat is told when a notification is not taken (it retries later)."""
    return (
        f"<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[{message}]]></return_msg></xml>".encode()
    )
