"""The WeChat Pay order fake (sandbox): JSAPI orders, payment, notification, query, close, refund.

It keeps WeChat's rules that the mall depends on: one order per ``out_trade_no`` (sent again with
the same amount it answers the same prepay id, with another amount it refuses), a closed order
can never be paid and a paid one cannot be closed (ORDERPAID), one refund per ``out_refund_no``,
accepted at once and finished later (PROCESSING until ``finish_refund``).
``pay(out_trade_no)`` is the member paying in the mini-app: it returns the signed notification XML
WeChat would POST to us, signed with the merchant key like the real one; ``finish_refund`` returns
the encrypted refund notification the same way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from app.core.clock import utcnow
from app.gateways import JsapiOrder, PaidOrder, RefundResult, Refused
from app.gateways.fakes import _Recorder
from app.wechat import pay_xml as xml

SANDBOX_APP_ID = "wx-sandbox-miniapp"
SANDBOX_MCH_ID = "1900000109"


@dataclass
class _Order:
    order: JsapiOrder
    prepay_id: str
    state: str = "NOTPAY"
    transaction_id: str | None = None
    paid_at: dt.datetime | None = None


class FakeOrderPayments(_Recorder):
    def __init__(self, api_key: str, journal: Path | None = None) -> None:
        super().__init__(journal)
        self.api_key = api_key
        self.orders: dict[str, _Order] = {}
        self.refunds: dict[str, tuple[str, int]] = {}  # out_refund_no → (out_trade_no, fen): once each
        self.refund_states: dict[str, str] = {}  # out_refund_no → PROCESSING, SUCCESS, CHANGE, REFUNDCLOSE
        self._state_lock = threading.Lock()

    def reset(self) -> None:
        super().reset()
        with self._state_lock:
            self.orders.clear()
            self.refunds.clear()
            self.refund_states.clear()

    def create_jsapi_order(self, order: JsapiOrder) -> str:
        self._record("unifiedorder", out_trade_no=order.out_trade_no, openid=order.openid, total_fee=order.amount_fen)
        with self._state_lock:
            known = self.orders.get(order.out_trade_no)
            if known is not None:
                if known.order.amount_fen != order.amount_fen:
                    raise Refused("商户订单号重复", code="INVALID_REQUEST")
                return known.prepay_id
            prepay_id = f"wx{hashlib.sha256(order.out_trade_no.encode()).hexdigest()[:30]}"
            self.orders[order.out_trade_no] = _Order(order, prepay_id)
            return prepay_id

    def jsapi_params(self, prepay_id: str) -> dict[str, str]:
        params = {
            "appId": SANDBOX_APP_ID,
            "timeStamp": str(int(utcnow().timestamp())),
            "nonceStr": secrets.token_hex(16),
            "package": f"prepay_id={prepay_id}",
            "signType": "MD5",
        }
        return params | {"paySign": xml.sign(params, self.api_key)}

    def parse_notification(self, body: bytes) -> PaidOrder:
        return xml.paid_order(xml.verified(body, self.api_key))

    def query_order(self, out_trade_no: str) -> PaidOrder:
        self._record("orderquery", out_trade_no=out_trade_no)
        with self._state_lock:
            known = self.orders.get(out_trade_no)
            return self._state_of(out_trade_no, known)

    def close_order(self, out_trade_no: str) -> PaidOrder:
        self._record("closeorder", out_trade_no=out_trade_no)
        with self._state_lock:
            known = self.orders.get(out_trade_no)
            if known is not None and known.state == "NOTPAY":
                known.state = "CLOSED"
            return self._state_of(out_trade_no, known)

    def refund(self, out_trade_no: str, out_refund_no: str, total_fen: int, refund_fen: int) -> str:
        self._record("refund", out_trade_no=out_trade_no, out_refund_no=out_refund_no, refund_fee=refund_fen)
        with self._state_lock:
            known = self.orders.get(out_trade_no)
            if known is None or known.state not in ("SUCCESS", "REFUND"):
                raise Refused("订单状态错误", code="TRADE_STATE_ERROR")
            if refund_fen > known.order.amount_fen or total_fen != known.order.amount_fen:
                raise Refused("退款金额错误", code="INVALID_REQUEST")
            self.refunds.setdefault(out_refund_no, (out_trade_no, refund_fen))  # the money moves once per number
            self.refund_states.setdefault(out_refund_no, "PROCESSING")
            known.state = "REFUND"
        return self._refund_id(out_refund_no)

    def parse_refund_notification(self, body: bytes) -> RefundResult:
        return xml.refund_notification(body, self.api_key, app_id=SANDBOX_APP_ID, mch_id=SANDBOX_MCH_ID)

    def query_refund(self, out_refund_no: str) -> RefundResult:
        self._record("refundquery", out_refund_no=out_refund_no)
        with self._state_lock:
            return self._refund_of(out_refund_no)

    def finish_refund(self, out_refund_no: str, state: str = "SUCCESS") -> bytes:
        """WeChat finishes a refund (SUCCESS, CHANGE or REFUNDCLOSE): returns the notification it sends."""
        with self._state_lock:
            self.refund_states[out_refund_no] = state
            result = self._refund_of(out_refund_no)
        fields = {
            "out_trade_no": result.out_trade_no,
            "out_refund_no": out_refund_no,
            "refund_id": result.refund_id,
            "refund_fee": str(result.refund_fen),
            "settlement_refund_fee": str(result.refund_fen),
            "refund_status": state,
            "success_time": xml.refund_time(utcnow()) if state == "SUCCESS" else None,
            "refund_recv_accout": "支付用户零钱",
            "refund_request_source": "API",
        }
        return xml.encrypted_refund_notification(fields, self.api_key, app_id=SANDBOX_APP_ID, mch_id=SANDBOX_MCH_ID)

    def _refund_of(self, out_refund_no: str) -> RefundResult:
        if out_refund_no not in self.refunds:
            return RefundResult("", out_refund_no, None)
        out_trade_no, fen = self.refunds[out_refund_no]
        state = self.refund_states[out_refund_no]
        return RefundResult(
            out_trade_no,
            out_refund_no,
            state,
            refund_fen=fen,
            refund_id=self._refund_id(out_refund_no),
            refunded_at=utcnow().replace(microsecond=0) if state == "SUCCESS" else None,
        )

    @staticmethod
    def _refund_id(out_refund_no: str) -> str:
        return f"5030{hashlib.sha256(out_refund_no.encode()).hexdigest()[:24]}"

    # --- the member's side (tests, the demo) ------------------------------------------------------

    def pay(self, out_trade_no: str) -> bytes:
        """The member pays: the order is paid at WeChat; returns the notification WeChat would send."""
        with self._state_lock:
            known = self.orders[out_trade_no]
            if known.state == "NOTPAY":
                known.state, known.paid_at = "SUCCESS", utcnow().replace(microsecond=0)
                known.transaction_id = f"4200{hashlib.sha256(out_trade_no.encode()).hexdigest()[:24]}"
        return self.notification(out_trade_no)

    def notification(self, out_trade_no: str) -> bytes:
        known = self.orders[out_trade_no]
        fields = {
            "appid": SANDBOX_APP_ID,
            "mch_id": SANDBOX_MCH_ID,
            "nonce_str": secrets.token_hex(16),
            "result_code": "SUCCESS" if known.state in ("SUCCESS", "REFUND") else "FAIL",
            "return_code": "SUCCESS",
            "openid": known.order.openid,
            "trade_type": "JSAPI",
            "bank_type": "OTHERS",
            "total_fee": str(known.order.amount_fen),
            "cash_fee": str(known.order.amount_fen),
            "fee_type": "CNY",
            "transaction_id": known.transaction_id or "",
            "out_trade_no": out_trade_no,
            "time_end": xml.wechat_time(known.paid_at) if known.paid_at else "",
        }
        return xml.signed_xml(fields, self.api_key)

    def refunded(self, out_trade_no: str) -> int:
        """Fen refunded for an order (each refund number counted once)."""
        return sum(fen for trade, fen in self.refunds.values() if trade == out_trade_no)

    @staticmethod
    def _state_of(out_trade_no: str, known: _Order | None) -> PaidOrder:
        if known is None:
            return PaidOrder(out_trade_no, None)
        return PaidOrder(
            out_trade_no,
            known.state,
            amount_fen=known.order.amount_fen,
            transaction_id=known.transaction_id,
            paid_at=known.paid_at,
        )
