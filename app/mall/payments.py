"""The WeChat Pay order behind a points + cash redemption (the gateway side).

``open_order`` runs before the redemption takes any lock: the JSAPI order at WeChat for the
member's mini-app openid. ``out_trade_no`` comes from (member, request id, amount), so a resend,
even after a refusal, names the same WeChat order and WeChat answers the same prepay id. The
redemption then spends the points and reserves the stock in one transaction, the order
``awaiting_payment`` with its ``MallPayment`` row (``record``); the answer carries the
``wx.requestPayment`` parameters (``pay_params``). Refunds go out after the commit, one refund
number per order however often the job runs (``refund_payment``); WeChat accepting a refund is not
the money being back: the payment stays ``refunding`` until WeChat's result — its refund
notification, or a refund query by the reconciler when none came — says SUCCESS (``refunded``) or
CHANGE/REFUNDCLOSE (``refund_failed``, for an operator: ``record_refund_result``). Settling and
closing: ``app.mall.settling``.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import sqlalchemy as sa

from app import gateways
from app.config import current_settings
from app.core import tunables
from app.core.clock import utcnow
from app.core.db import db
from app.gateways import JsapiOrder, RefundResult
from app.jobs import job
from app.mall import catalog
from app.mall.models import MallItem, MallPayment, RedemptionOrder

PAYMENT_MINUTES = tunables.define(
    "mall.payment_minutes", 15, "Minutes a points + cash order waits for its WeChat Pay payment before it is closed"
)


def out_trade_no(member_id: int, request_id: str, amount_fen: int) -> str:
    digest = hashlib.sha256(f"{member_id}:{request_id}:{amount_fen}".encode()).hexdigest()
    return f"ml{digest[:30]}"


def open_order(
    *, member_id: int, openid: str, request_id: str, item: MallItem, quantity: int, amount_fen: int, now: dt.datetime
) -> tuple[str, str, dt.datetime]:
    """The WeChat Pay order for a redemption about to be made: (out_trade_no, prepay_id, expires_at)."""
    number = out_trade_no(member_id, request_id, amount_fen)
    expires_at = now + dt.timedelta(minutes=PAYMENT_MINUTES.value())
    prepay_id = gateways.pay_orders().create_jsapi_order(
        JsapiOrder(
            out_trade_no=number,
            openid=openid,
            amount_fen=amount_fen,
            description=f"{catalog.localized(item.name, 'zh_CN')} ×{quantity}",
            expires_at=expires_at,
            client_ip=current_settings().PUBLIC_IP,
        )
    )
    return number, prepay_id, expires_at


def record(order: RedemptionOrder, number: str, prepay_id: str, expires_at: dt.datetime) -> MallPayment:
    payment = MallPayment(
        order_id=order.id,
        out_trade_no=number,
        amount_fen=order.cash_fen,
        prepay_id=prepay_id,
        status="awaiting",
        expires_at=expires_at,
        created_at=order.created_at,
    )
    db.session.add(payment)
    db.session.flush()
    return payment


def of_order(order_id: int, *, lock: bool = False) -> MallPayment | None:
    query = sa.select(MallPayment).where(MallPayment.order_id == order_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.session.scalar(query)


def pay_params(payment: MallPayment) -> dict[str, str] | None:
    """What ``wx.requestPayment`` takes, while the order can still be paid."""
    if payment.status != "awaiting" or payment.expires_at <= utcnow():
        return None
    return gateways.pay_orders().jsapi_params(payment.prepay_id)


def refund_after_cancel(order: RedemptionOrder) -> None:
    """A paid order was cancelled (points and stock given back by the caller): refund the cash."""
    payment = of_order(order.id, lock=True)
    if payment is not None and payment.status == "paid":
        start_refund(payment)


def start_refund(payment: MallPayment) -> None:
    payment.status = "refunding"
    refund_payment.after_commit(payment.order_id, job_id=f"mall-refund-{payment.order_id}")


def refund_number(payment: MallPayment) -> str:
    return f"rf{payment.out_trade_no}"[:64]


@job("payments", retry=(30, 120, 600, 1800, 3600))
def refund_payment(order_id: int) -> str:
    """Ask WeChat to refund a cancelled order's cash (the same refund number on every retry) and
    note that it accepted; the result comes later (``record_refund_result``)."""
    payment = of_order(order_id)
    if payment is None or payment.status != "refunding":
        return "nothing to refund"
    refund_id = gateways.pay_orders().refund(
        payment.out_trade_no, refund_number(payment), payment.amount_fen, payment.amount_fen
    )
    payment = of_order(order_id, lock=True)
    assert payment is not None
    if payment.status == "refunding" and payment.refund_requested_at is None:
        payment.refund_id, payment.refund_requested_at = refund_id, utcnow()
    return f"refund of {payment.amount_fen} fen accepted by WeChat: {payment.status}"


class RefundMismatch(ValueError):
    """A refund result that names our order but not our refund (another number or amount)."""


def record_refund_result(result: RefundResult) -> str:
    """WeChat's result for a refund (notification or query), applied once under the payment's lock:
    SUCCESS → refunded; CHANGE or REFUNDCLOSE → refund_failed; PROCESSING or unknown → unchanged."""
    order_id = db.session.scalar(sa.select(MallPayment.order_id).where(MallPayment.out_trade_no == result.out_trade_no))
    if order_id is None:
        raise LookupError(f"no mall payment {result.out_trade_no}")
    payment = of_order(order_id, lock=True)
    assert payment is not None
    if result.out_refund_no != refund_number(payment) or result.refund_fen not in (0, payment.amount_fen):
        raise RefundMismatch(f"refund {result.out_refund_no} of {result.refund_fen} fen is not ours")
    if payment.status != "refunding":
        return f"already {payment.status}"
    if not result.final:
        return f"refund {result.state or 'unknown at WeChat'}: still refunding"
    payment.refund_state = result.state
    payment.refund_id = payment.refund_id or result.refund_id
    if result.state == "SUCCESS":
        payment.status, payment.refunded_at = "refunded", result.refunded_at or utcnow()
    else:
        payment.status = "refund_failed"
    return f"refund {result.state}: {payment.status}"
