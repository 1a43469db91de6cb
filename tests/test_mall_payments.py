"""Points + cash through WeChat Pay (the sandbox gateway): the order waits for its payment with the
points spent and the stock reserved, the verified notification settles it once, an unpaid order is
closed at WeChat and given back, a paid one cancelled before shipment is refunded — done only when
WeChat's refund result (its encrypted notification, or a query when none came) says so."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.db import db
from app.core.inbox import InboundEvent
from app.gateways import Unavailable
from app.mall import payments, settling
from app.mall.models import MallItem, MallPayment, RedemptionOrder, Voucher
from app.members import services
from app.points import queries
from app.points.models import PointLot
from app.wechat import clients, pay_sandbox, pay_xml
from tests.benefit_helpers import give_points
from tests.mall_helpers import item
from tests.miniapp_helpers import FakeMiniappWeChat, MiniClient

NOTIFY = "/api/v1/wechat-pay/notifications"
REFUND_NOTIFY = "/api/v1/wechat-pay/refund-notifications"


@pytest.fixture
def mini(client, fakes, app, http_mock, app_ctx):
    clients.forget_clients(app)
    mini = MiniClient(client, FakeMiniappWeChat(fakes.mini_app))
    mini.sign_in("o-mall-pay")
    assert mini.register("13955557081").status_code == 201
    give_points(services.find_by_phone("13955557081"), 500)  # with the welcome gift: 1,000
    return mini


@pytest.fixture
def pay(fakes):
    return fakes.pay_orders


def balance() -> int:
    return queries.balance(services.find_by_phone("13955557081").id).available


def redeem(mini, code: str, request_id: str, **extra):
    return mini.post("/api/v1/me/redemptions", json={"item": code, "quantity": 1, "request_id": request_id} | extra)


def number_of(order_id: int) -> str:
    payment = payments.of_order(order_id)
    assert payment is not None
    return payment.out_trade_no


def notify(client, body: bytes):
    return client.post(NOTIFY, data=body, content_type="text/xml")


def refund_notify(client, body: bytes):
    return client.post(REFUND_NOTIFY, data=body, content_type="text/xml")


def stock(code: str) -> int:
    return db.session.scalar(
        sa.select(MallItem.stock).where(MallItem.code == code).execution_options(populate_existing=True)
    )


def test_a_points_and_cash_coupon_waits_for_payment_then_the_notification_issues_it_once(mini, pay, client):
    item("coupon", points=400, stock=5, code="wash", cash_fen=1990)
    answer = redeem(mini, "wash", "pay-000001")
    assert answer.status_code == 201, answer.json
    order = answer.json
    assert (order["status"], order["cash_fen"], order["vouchers"]) == ("awaiting_payment", 1990, [])
    params = order["payment"]["pay_params"]
    assert params["package"].startswith("prepay_id=wx") and params["signType"] == "MD5"
    assert params["paySign"] == pay_xml.sign({k: v for k, v in params.items() if k != "paySign"}, pay.api_key)
    sent = pay.of("unifiedorder")[0]
    assert (sent["openid"], sent["total_fee"]) == ("o-mall-pay", 1990)  # the member's mini-app openid
    assert balance() == 600 and stock("wash") == 4  # spent and reserved in the same transaction

    paid = pay.pay(number_of(order["id"]))
    first, again = notify(client, paid), notify(client, paid)
    assert first.status_code == again.status_code == 200
    assert b"SUCCESS" in first.data and b"SUCCESS" in again.data
    row = db.session.get(RedemptionOrder, order["id"], populate_existing=True)
    assert row.status == "fulfilled"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Voucher).where(Voucher.order_id == row.id)) == 1
    assert (
        db.session.scalar(
            sa.select(sa.func.count()).select_from(InboundEvent).where(InboundEvent.source == "wechatpay")
        )
        == 1
    )
    assert payments.of_order(row.id).status == "paid"
    shown = mini.get("/api/v1/me/redemptions").json[0]
    assert shown["status"] == "fulfilled" and shown["payment"]["status"] == "paid" and shown["vouchers"]
    assert shown["payment"]["pay_params"] is None
    resend = redeem(mini, "wash", "pay-000001")  # the same tap again: the same order, no second WeChat order
    assert resend.json["id"] == order["id"] and len(pay.of("unifiedorder")) == 1


def test_a_notification_that_does_not_verify_is_refused_and_not_stored(mini, pay, client):
    item("coupon", points=400, stock=5, code="wash", cash_fen=1990)
    order = redeem(mini, "wash", "pay-000002").json
    forged = pay.pay(number_of(order["id"])).replace(b"<total_fee>1990", b"<total_fee>1")
    answer = notify(client, forged)
    assert answer.status_code == 401 and b"FAIL" in answer.data
    assert notify(client, b"<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><xml>&e;</xml>").status_code == 401
    assert not db.session.scalar(sa.select(sa.func.count()).select_from(InboundEvent))
    assert db.session.get(RedemptionOrder, order["id"]).status == "awaiting_payment"


def test_unpaid_in_time_the_order_is_closed_at_wechat_points_and_stock_given_back(mini, pay, time_machine):
    item("coupon", points=400, stock=5, code="wash", cash_fen=1990)
    before = {lot.id: lot.expires_at for lot in db.session.scalars(sa.select(PointLot))}
    order = redeem(mini, "wash", "pay-000003").json
    time_machine.move_to(utcnow() + dt.timedelta(minutes=5))
    settling.reconcile_payments()  # asked about, still payable: kept
    assert db.session.get(RedemptionOrder, order["id"], populate_existing=True).status == "awaiting_payment"
    time_machine.move_to(utcnow() + dt.timedelta(minutes=payments.PAYMENT_MINUTES.value()))
    settling.reconcile_payments()
    row = db.session.get(RedemptionOrder, order["id"], populate_existing=True)
    assert (row.status, row.cancelled_by) == ("cancelled", "system:payment_timeout")
    assert pay.query_order(number_of(row.id)).state == "CLOSED" and pay.of("closeorder")
    assert balance() == 1000 and stock("wash") == 5
    after = {
        lot.id: lot.expires_at
        for lot in db.session.scalars(sa.select(PointLot).execution_options(populate_existing=True))
    }
    assert after == before  # the refund went back into the lots, each with its own expiry
    assert payments.of_order(row.id).status == "closed"
    assert pay.notification(number_of(row.id)).count(b"FAIL")  # WeChat will not take the payment now


def test_paid_at_wechat_but_the_notification_lost_the_reconciler_keeps_the_order(mini, pay, time_machine):
    item("physical", points=400, stock=5, code="mug", cash_fen=2500)
    order = redeem(mini, "mug", "pay-000004", address="上海市静安区南京西路1号").json
    pay.pay(number_of(order["id"]))  # paid; the notification never arrives
    time_machine.move_to(utcnow() + dt.timedelta(minutes=payments.PAYMENT_MINUTES.value() + 1))
    settling.reconcile_payments()
    row = db.session.get(RedemptionOrder, order["id"], populate_existing=True)
    assert row.status == "created"  # paid: waits for shipment, not closed
    assert balance() == 600 and stock("mug") == 4 and not pay.of("closeorder")


def test_a_paid_physical_order_cancelled_before_shipment_refunds_cash_and_points(mini, pay, client):
    item("physical", points=400, stock=5, code="mug", cash_fen=2500)
    order = redeem(mini, "mug", "pay-000005", address="上海市静安区南京西路1号").json
    notify(client, pay.pay(number_of(order["id"])))
    cancelled = mini.post(f"/api/v1/me/redemptions/{order['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert balance() == 1000 and stock("mug") == 5
    assert pay.refunded(number_of(order["id"])) == 2500  # after the commit, through WeChat Pay
    payment = payments.of_order(order["id"])
    assert payment.status == "refunding" and payment.refund_id and payment.refund_requested_at  # accepted, not done
    assert mini.post(f"/api/v1/me/redemptions/{order['id']}/cancel").status_code == 409
    result = pay.finish_refund(payments.refund_number(payment))  # WeChat's result, encrypted with the merchant key
    first, again = refund_notify(client, result), refund_notify(client, result)
    assert first.status_code == again.status_code == 200 and b"SUCCESS" in first.data
    payment = db.session.get(MallPayment, order["id"], populate_existing=True)
    assert (payment.status, payment.refund_state) == ("refunded", "SUCCESS") and payment.refunded_at
    assert stored_refund_events() == 1 and pay.refunded(number_of(order["id"])) == 2500
    assert mini.get("/api/v1/me/redemptions").json[0]["payment"]["status"] == "refunded"


def paid_then_cancelled(mini, pay, client, request_id: str) -> MallPayment:
    item("physical", points=400, stock=5, code="mug", cash_fen=2500)
    order = redeem(mini, "mug", request_id, address="上海市静安区南京西路1号").json
    notify(client, pay.pay(number_of(order["id"])))
    assert mini.post(f"/api/v1/me/redemptions/{order['id']}/cancel").status_code == 200
    payment = payments.of_order(order["id"])
    assert payment.status == "refunding"
    return payment


def stored_refund_events() -> int:
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(InboundEvent).where(InboundEvent.type == settling.REFUND_EVENT)
    )


def test_a_refund_the_payers_card_refused_is_marked_failed_for_an_operator(mini, pay, client, app):
    payment = paid_then_cancelled(mini, pay, client, "pay-000011")
    assert refund_notify(client, pay.finish_refund(payments.refund_number(payment), "CHANGE")).status_code == 200
    payment = db.session.get(MallPayment, payment.order_id, populate_existing=True)
    assert (payment.status, payment.refund_state, payment.refunded_at) == ("refund_failed", "CHANGE", None)
    listed = app.test_cli_runner().invoke(args=["mall", "refunds"])
    assert listed.exit_code == 0 and f"order {payment.order_id}" in listed.output and "CHANGE" in listed.output
    # a late SUCCESS for the same refund does not overturn what an operator is now handling
    refund_notify(client, pay.finish_refund(payments.refund_number(payment)))
    assert db.session.get(MallPayment, payment.order_id, populate_existing=True).status == "refund_failed"


def test_a_refund_notification_that_does_not_decrypt_or_is_not_ours_is_refused_and_not_stored(mini, pay, client):
    payment = paid_then_cancelled(mini, pay, client, "pay-000012")
    genuine = pay.finish_refund(payments.refund_number(payment))
    other_key = pay_xml.encrypted_refund_notification(
        {
            "out_trade_no": payment.out_trade_no,
            "out_refund_no": payments.refund_number(payment),
            "refund_status": "SUCCESS",
        },
        "0" * 32,
        app_id=pay_sandbox.SANDBOX_APP_ID,
        mch_id=pay_sandbox.SANDBOX_MCH_ID,
    )
    other_merchant = genuine.replace(pay_sandbox.SANDBOX_MCH_ID.encode(), b"1900000999")
    tampered = genuine.replace(b"<req_info><![CDATA[", b"<req_info><![CDATA[AAAA")
    for body in (other_key, other_merchant, tampered, b"<xml><return_code>SUCCESS</return_code></xml>", b"\xff\x00"):
        answer = refund_notify(client, body)
        assert answer.status_code == 401 and b"FAIL" in answer.data, body
    assert stored_refund_events() == 0
    assert payments.of_order(payment.order_id).status == "refunding"


def test_a_refund_result_naming_another_refund_number_or_amount_changes_nothing(mini, pay, client):
    payment = paid_then_cancelled(mini, pay, client, "pay-000013")
    result = pay.query_refund(payments.refund_number(payment))
    with pytest.raises(payments.RefundMismatch):
        payments.record_refund_result(dataclasses.replace(result, state="SUCCESS", out_refund_no="rf-someone-else"))
    with pytest.raises(payments.RefundMismatch):
        payments.record_refund_result(dataclasses.replace(result, state="SUCCESS", refund_fen=1))
    assert db.session.get(MallPayment, payment.order_id, populate_existing=True).status == "refunding"


def test_a_lost_refund_notification_is_made_up_by_asking_wechat(mini, pay, client, time_machine):
    payment = paid_then_cancelled(mini, pay, client, "pay-000014")
    settling.reconcile_payments()  # just accepted: not asked about yet
    assert not pay.of("refundquery")
    time_machine.move_to(utcnow() + settling.QUERY_AFTER + dt.timedelta(seconds=1))
    settling.reconcile_payments()  # still processing at WeChat
    assert len(pay.of("refundquery")) == 1
    assert payments.of_order(payment.order_id).status == "refunding"
    pay.finish_refund(payments.refund_number(payment))  # done at WeChat; its notification is lost
    time_machine.move_to(utcnow() + dt.timedelta(minutes=1))
    settling.reconcile_payments()
    payment = db.session.get(MallPayment, payment.order_id, populate_existing=True)
    assert (payment.status, payment.refund_state) == ("refunded", "SUCCESS")
    time_machine.move_to(utcnow() + dt.timedelta(minutes=5))
    settling.reconcile_payments()
    assert len(pay.of("refundquery")) == 2  # nothing left to ask about


def test_the_member_cancels_before_paying_closed_at_wechat_first(mini, pay):
    item("coupon", points=400, stock=5, code="wash", cash_fen=1990)
    order = redeem(mini, "wash", "pay-000006").json
    cancelled = mini.post(f"/api/v1/me/redemptions/{order['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert pay.query_order(number_of(order["id"])).state == "CLOSED"
    assert balance() == 1000 and stock("wash") == 5


def test_a_member_who_paid_meanwhile_cannot_cancel_unpaid(mini, pay):
    item("coupon", points=400, stock=5, code="wash", cash_fen=1990)
    order = redeem(mini, "wash", "pay-000007").json
    pay.pay(number_of(order["id"]))
    refused = mini.post(f"/api/v1/me/redemptions/{order['id']}/cancel")
    assert refused.status_code == 409 and refused.json["error"]["code"] == "payment_made"
    assert balance() == 600


def test_wechat_pay_unavailable_makes_no_order(mini, pay):
    item("coupon", points=400, stock=5, code="wash", cash_fen=1990)
    pay.fail_next("unifiedorder", Unavailable("read timed out"))
    answer = redeem(mini, "wash", "pay-000008")
    assert answer.status_code == 503 and answer.headers.get("Retry-After")
    assert balance() == 1000 and stock("wash") == 5
    again = redeem(mini, "wash", "pay-000008")  # the same tap, retried: now it goes through
    assert again.status_code == 201 and again.json["status"] == "awaiting_payment"
