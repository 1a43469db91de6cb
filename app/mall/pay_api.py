"""``POST /api/v1/wechat-pay/notifications``: WeChat Pay's payment notifications for points + cash
orders. The signature is verified (401 and a FAIL answer otherwise: WeChat retries), the raw body
is stored in the inbox first (``source = 'wechatpay'``, one event per paid order, so redelivery is
harmless) and the drain settles the order (``settling.settle``) exactly once.

``POST /api/v1/wechat-pay/refund-notifications``: WeChat Pay's refund results (``req_info``
encrypted with the merchant key; one that does not decrypt to our merchant's refund is refused),
stored the same way (one event per refund and result) and applied by the drain
(``payments.record_refund_result``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from flask import Response, request

from app import gateways
from app.core import inbox
from app.core.http import Blueprint
from app.jobs.drain import nudge
from app.mall.settling import PAID_EVENT, REFUND_EVENT, SOURCE
from app.wechat import pay_xml

blp = Blueprint("wechat_pay", __name__, url_prefix="/api/v1/wechat-pay", description="WeChat Pay → loyalty")

_XML = {"text/xml": {"schema": {"type": "string"}}}


@blp.route("/notifications", methods=["POST"])
@blp.doc(
    summary="A WeChat Pay payment notification (API v2 XML, signed with the merchant key)",
    requestBody={"required": True, "content": _XML},
    responses={
        200: {"description": "Taken (stored, or already known): SUCCESS", "content": _XML},
        401: {"description": "The signature does not verify: FAIL (WeChat retries)", "content": _XML},
    },
)
def notification() -> Response:
    def paid_event(raw: bytes) -> tuple[str, str, dt.datetime | None] | None:
        paid = gateways.pay_orders().parse_notification(raw)
        return (f"paid:{paid.out_trade_no}", PAID_EVENT, paid.paid_at) if paid.paid else None

    return _take(paid_event, refusal="签名失败")


@blp.route("/refund-notifications", methods=["POST"])
@blp.doc(
    summary="A WeChat Pay refund result notification (API v2 XML, req_info encrypted with the merchant key)",
    requestBody={"required": True, "content": _XML},
    responses={
        200: {"description": "Taken (stored, or already known): SUCCESS", "content": _XML},
        401: {"description": "Not our merchant's refund, or it does not decrypt: FAIL", "content": _XML},
    },
)
def refund_notification() -> Response:
    def refund_event(raw: bytes) -> tuple[str, str, dt.datetime | None]:
        result = gateways.pay_orders().parse_refund_notification(raw)
        return f"refund:{result.out_refund_no}:{result.state}"[:128], REFUND_EVENT, result.refunded_at

    return _take(refund_event, refusal="解密失败")


def _take(parse: Callable[[bytes], tuple[str, str, dt.datetime | None] | None], *, refusal: str) -> Response:
    """Both notifications: parse (401 and FAIL if it does not verify: WeChat retries), store the raw
    body under the event's external id once (a redelivery is known already), nudge the drain, ACK.
    ``parse`` answers (external id, event type, when it happened), or None for nothing to keep."""
    raw = request.get_data(cache=False)
    try:
        event = parse(raw)
    except gateways.BadSignature:
        return Response(pay_xml.refusal(refusal), status=401, mimetype="text/xml")
    if event is not None:
        external_id, event_type, occurred_at = event
        stored = inbox.store_event(
            source=SOURCE, external_id=external_id, type=event_type, body=raw, occurred_at=occurred_at
        )
        if stored is not None:
            nudge(SOURCE)
    return Response(pay_xml.ACK, mimetype="text/xml")
