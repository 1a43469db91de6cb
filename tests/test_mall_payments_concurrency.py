"""Points + cash exactly once under concurrency, on PostgreSQL with real commits: a paid
notification delivered ten times at once fulfils the order once; the paid notification racing the
timeout leaves one outcome, and when WeChat says paid the order is kept."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.db import db
from app.core.inbox import InboundEvent
from app.mall import payments, settling
from app.mall.models import MallItem, RedemptionOrder, Voucher
from app.points.models import PointEntry
from tests.conftest import run_concurrently
from tests.test_mall_concurrency import count, in_own_context, redeem_as, setup

pytestmark = [pytest.mark.postgres, pytest.mark.committed]
NOTIFY = "/api/v1/wechat-pay/notifications"


def cash_order(app, fakes, *, kind: str = "coupon") -> tuple[int, int, str]:
    (member_id,) = setup(app, members=1, points=1000, stock=10, price=400, kind=kind)
    with app.app_context():
        db.session.execute(sa.update(MallItem).where(MallItem.code == "hot").values(cash_fen=990))
        db.session.commit()
    extra = {"address": "上海市静安区南京西路1号"} if kind == "physical" else {}
    result = redeem_as(app, member_id, "cash-00001", payer_openid="o-cash", **extra)
    assert not isinstance(result, Exception), result
    order_id = result.order.id
    number = in_own_context(app, lambda: payments.of_order(order_id).out_trade_no)
    return member_id, order_id, number


def status_of(app, order_id: int) -> str:
    return in_own_context(app, lambda: db.session.get(RedemptionOrder, order_id).status)


def test_a_paid_notification_delivered_ten_times_at_once_fulfils_once(app, fakes):
    _member_id, order_id, number = cash_order(app, fakes)
    body = fakes.pay_orders.pay(number)
    answers = run_concurrently(10, lambda _i: app.test_client().post(NOTIFY, data=body, content_type="text/xml"))
    assert [a.status_code for a in answers] == [200] * 10
    assert status_of(app, order_id) == "fulfilled"
    assert count(app, Voucher, Voucher.order_id == order_id) == 1
    assert count(app, InboundEvent, InboundEvent.source == "wechatpay") == 1


def test_the_paid_notification_racing_the_timeout_keeps_the_paid_order(app, fakes, time_machine):
    member_id, order_id, number = cash_order(app, fakes, kind="physical")
    body = fakes.pay_orders.pay(number)  # WeChat took the money; the notification and the timeout race
    time_machine.move_to(utcnow() + dt.timedelta(minutes=in_own_context(app, payments.PAYMENT_MINUTES.value) + 1))

    def one(i: int):
        if i % 2:
            return app.test_client().post(NOTIFY, data=body, content_type="text/xml").status_code
        return in_own_context(app, lambda: settling.close_unpaid(order_id, utcnow()))

    results = run_concurrently(6, one)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert status_of(app, order_id) == "created"  # paid: kept, waiting for shipment
    assert in_own_context(app, lambda: payments.of_order(order_id).status) == "paid"
    assert count(app, PointEntry, PointEntry.member_id == member_id, PointEntry.kind == "refund") == 0
    assert count(app, MallItem, MallItem.code == "hot", MallItem.stock == 9) == 1
    assert not fakes.pay_orders.refunds


def test_an_unpaid_order_closed_by_racing_reconcilers_is_given_back_once(app, fakes, time_machine):
    member_id, order_id, _number = cash_order(app, fakes)
    time_machine.move_to(utcnow() + dt.timedelta(minutes=in_own_context(app, payments.PAYMENT_MINUTES.value) + 1))
    results = run_concurrently(5, lambda _i: in_own_context(app, lambda: settling.close_unpaid(order_id, utcnow())))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert status_of(app, order_id) == "cancelled"
    assert count(app, PointEntry, PointEntry.member_id == member_id, PointEntry.kind == "refund") == 1
    assert count(app, MallItem, MallItem.code == "hot", MallItem.stock == 10) == 1
