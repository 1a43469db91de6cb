"""Points + cash orders settled with WeChat Pay: paid exactly once, or closed and given back.

* ``settle``: WeChat says paid (a verified notification drained from the inbox, or a query) →
  the order moves on (vouchers issued, goods wait for shipment) under the order's row lock, once:
  a second notice finds the payment no longer awaiting.
* ``close_unpaid`` (the reconciler, every minute): an order awaiting payment is asked about; past
  ``mall.payment_minutes`` it is closed at WeChat first — WeChat is the arbiter: a paid order
  cannot be closed, a closed one cannot be paid — then its points go back through the ledger
  refund (the lots' own expiry) and its stock is returned. If WeChat says paid, the order is kept.
* ``cancel``: the member cancels; an unpaid order is closed at WeChat first, a paid one (goods not
  shipped) gets its points and stock back and its cash refunded after the commit.

Lock order, as everywhere in the mall: the order row, then its payment row.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app import gateways
from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import Conflict
from app.core.i18n import _l
from app.core.inbox import InboundEvent
from app.gateways import PaidOrder
from app.jobs import dispatch, job
from app.jobs.drain import handles
from app.mall import ordering, payments
from app.mall.models import MallPayment, RedemptionOrder
from app.members.models import Member

#: The inbox source and event types of WeChat Pay's paid and refund notifications (``pay_api``).
SOURCE = "wechatpay"
PAID_EVENT = "mall.paid"
REFUND_EVENT = "mall.refund"
#: An order awaiting payment is asked about (its notification may be lost) after this long.
QUERY_AFTER = dt.timedelta(minutes=2)
RECONCILE_BATCH = 200


class PaymentAlreadyMade(Conflict):
    code = "payment_made"
    default_message = _l("This order is already paid; it can no longer be cancelled this way.")


def _order_id_of(number: str) -> int | None:
    return db.session.scalar(sa.select(MallPayment.order_id).where(MallPayment.out_trade_no == number))


def settle(paid: PaidOrder) -> str:
    """WeChat says this order is paid: move it on once (the caller commits). Returns the outcome."""
    order_id = _order_id_of(paid.out_trade_no)
    if order_id is None:
        raise LookupError(f"no mall payment {paid.out_trade_no}")
    order = ordering.locked_order(order_id)  # lock order: the order row, then its payment
    payment = payments.of_order(order_id, lock=True)
    assert payment is not None
    if paid.amount_fen != payment.amount_fen:
        raise ValueError(f"paid {paid.amount_fen} fen for an order of {payment.amount_fen}")
    if payment.status in ("paid", "refunding", "refunded", "refund_failed"):
        return f"already {payment.status}"
    payment.status, payment.transaction_id, payment.paid_at = "paid", paid.transaction_id, paid.paid_at or utcnow()
    if order.status != "awaiting_payment":  # given up here, yet WeChat took the money: give it back
        payments.start_refund(payment)
        db.session.flush()
        return f"paid after the order was {order.status}: refunding"
    ordering.payment_received(order)
    db.session.flush()
    return f"paid: order {order.id} {order.status}"


def close_unpaid(order_id: int, now: dt.datetime) -> str:
    """Ask WeChat about an order awaiting payment: paid → settle; past its time → close at WeChat
    and give back. The WeChat calls come first, with no lock held; the state is re-checked under
    the order's lock afterwards."""
    payment = payments.of_order(order_id)
    if payment is None or payment.status != "awaiting":
        return "not awaiting"
    orders = gateways.pay_orders()
    answer = orders.query_order(payment.out_trade_no)
    if answer.paid:
        return settle(answer)
    if payment.expires_at > now and answer.state not in gateways.UNPAYABLE:
        return "still awaiting"
    answer = orders.close_order(payment.out_trade_no)
    if answer.paid:  # paid while we were closing: WeChat refused the close, the order is kept
        return settle(answer)
    order = ordering.locked_order(order_id)
    payment = payments.of_order(order_id, lock=True)
    assert payment is not None
    if payment.status != "awaiting" or order.status != "awaiting_payment":
        return f"already {payment.status}"
    payment.status, payment.closed_at = "closed", now
    ordering.give_up_unpaid(order, "system:payment_timeout")
    return f"closed: order {order.id} cancelled"


def cancel_unpaid(order: RedemptionOrder, actor: str) -> RedemptionOrder:
    """The member gives up before paying: closed at WeChat first (no lock held), then given back.
    If WeChat says it was paid meanwhile, the cancel is refused and the payment settles it."""
    payment = payments.of_order(order.id)
    assert payment is not None
    answer = gateways.pay_orders().close_order(payment.out_trade_no)
    if answer.paid:
        raise PaymentAlreadyMade()
    order = ordering.locked_order(order.id)
    payment = payments.of_order(order.id, lock=True)
    assert payment is not None
    if order.status != "awaiting_payment" or payment.status != "awaiting":
        raise ordering.OrderClosed()
    payment.status, payment.closed_at = "closed", utcnow()
    return ordering.give_up_unpaid(order, actor)


@handles(SOURCE, PAID_EVENT)
def _paid_notification(_event: InboundEvent, body: bytes) -> str:
    """A stored paid notification (verified again: the body is what WeChat signed)."""
    return settle(gateways.pay_orders().parse_notification(body))


@handles(SOURCE, REFUND_EVENT)
def _refund_notification(_event: InboundEvent, body: bytes) -> str:
    """A stored refund notification (decrypted again: the body is what WeChat sent)."""
    return payments.record_refund_result(gateways.pay_orders().parse_refund_notification(body))


@job("payments")
def reconcile_payment(order_id: int) -> str:
    return close_unpaid(order_id, utcnow())


@job("payments")
def reconcile_refund(order_id: int) -> str:
    """A refund WeChat accepted a while ago and never reported on: ask for its result."""
    payment = payments.of_order(order_id)
    if payment is None or payment.status != "refunding" or payment.refund_requested_at is None:
        return "not waiting for a refund result"
    result = gateways.pay_orders().query_refund(payments.refund_number(payment))
    if result.state is None:  # accepted, yet unknown now: send it again (the same number refunds once)
        payment = payments.of_order(order_id, lock=True)
        if payment is not None and payment.status == "refunding":
            payment.refund_requested_at = None
        return "refund unknown at WeChat: to be sent again"
    return payments.record_refund_result(result)


@job("periodic", timeout=600)
def reconcile_payments() -> int:
    """Every minute: orders awaiting payment for a while are asked about (a lost notification)
    and closed once past their time; refunds left unsent are sent again, refunds accepted a while
    ago without a result are asked about. One job per order."""
    now = utcnow()
    awaiting = db.session.scalars(
        sa.select(MallPayment.order_id)
        .where(MallPayment.status == "awaiting", MallPayment.created_at <= now - QUERY_AFTER)
        .order_by(MallPayment.expires_at)
        .limit(RECONCILE_BATCH)
    ).all()
    refunding = db.session.execute(
        sa.select(MallPayment.order_id, MallPayment.refund_requested_at)
        .where(MallPayment.status == "refunding")
        .where(sa.or_(MallPayment.refund_requested_at.is_(None), MallPayment.refund_requested_at <= now - QUERY_AFTER))
        .limit(RECONCILE_BATCH)
    ).all()
    for order_id in awaiting:
        dispatch(reconcile_payment.spec, (order_id,), f"mall-reconcile-{order_id}-{now:%Y%m%d%H%M}")
    for order_id, requested_at in refunding:
        if requested_at is None:  # never accepted by WeChat: send it again (same refund number)
            dispatch(payments.refund_payment.spec, (order_id,), f"mall-refund-{order_id}-{now:%Y%m%d%H%M}")
        else:
            dispatch(reconcile_refund.spec, (order_id,), f"mall-refund-result-{order_id}-{now:%Y%m%d%H%M}")
    return len(awaiting) + len(refunding)


def cancel(member: Member, order_id: int) -> RedemptionOrder:
    """The member cancels: before payment (closed at WeChat first) or before fulfilment."""
    order = ordering.get_for_member(member.id, order_id)
    if order.status == "awaiting_payment":
        return cancel_unpaid(order, f"member:{member.id}")
    return ordering.cancel(member, order_id)
