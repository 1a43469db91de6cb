"""External systems behind interfaces in our own terms (the warehouse pattern).

Domain code asks for a gateway (``official_account()``, ``mini_app()``, ``payments()``) and calls
it; it never imports wechatpy or builds a URL. Each gateway has a real HTTP implementation
(``app.wechat.gateways``, tested with ``responses`` against recorded request and response shapes)
and an in-process fake (``app.gateways.fakes``) for tests and ``make run``. Configuration picks
one when the app starts: ``LOYALTY_WECHAT_API_BASE`` / ``LOYALTY_WECHAT_PAY_API_BASE`` set to
``sandbox`` choose the fakes.

Every failure comes out as one of three errors:

* ``Refused`` — the partner answered no, with its code (43004 not following, 40029 bad code…);
* ``Unavailable`` — no usable answer (network, timeout, 5xx): the outcome is unknown, retry later;
  at the HTTP edge it is a 503 with ``Retry-After``;
* ``PaymentRefused`` — a payment the partner definitely did not make (the money can be released).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Flask, current_app

from app.core.errors import PartnerFailure


class GatewayError(PartnerFailure):
    """A partner call that did not do what was asked."""

    def __init__(self, message: str = "", *, code: str | int | None = None) -> None:
        super().__init__(message or str(code or type(self).__name__))
        self.code = code
        self.message = message


class Refused(GatewayError):
    """The partner answered with an error code: retrying the same call gives the same answer."""


class Unavailable(GatewayError):
    """No usable answer (network, timeout, the partner's own failure): the outcome is unknown."""


class PaymentRefused(Refused):
    """The payment was definitely not made (e.g. NOTENOUGH): its money may be released."""


# --- the service account (公众号) ---------------------------------------------------------------

#: WeChat's codes that domain code reacts to.
NOT_FOLLOWING = 43004  # template message to someone who does not follow the account
NO_SUBSCRIPTION_GRANT = 43101  # subscribe message without an unused grant
#: Token answers the real clients already handled by refreshing once and retrying the call; one
#: reaching domain code means the retry failed too (retried later with backoff).
TOKEN_REJECTED = (40001, 42001)
BAD_CODE = 40029  # an invalid (or used) wx.login / phone code
INVALID_SCENE = 40169  # getwxacodeunlimit: a scene longer than 32 characters


@dataclass(frozen=True)
class QrTicket:
    """A parametric QR code WeChat issued: ``url`` is what the QR image must contain."""

    ticket: str
    url: str
    expire_seconds: int | None


class OfficialAccount(Protocol):
    """The service account's messages and codes."""

    def send_text(self, openid: str, content: str) -> None:
        """A customer-service text message (within 48 hours of the member's last interaction)."""

    def send_articles(self, openid: str, articles: list[dict[str, Any]]) -> None:
        """A customer-service article card: [{title, description, url, image}]."""

    def send_template(self, openid: str, template_id: str, data: dict[str, Any], *, url: str | None = None) -> int:
        """A template message to a follower; returns WeChat's msgid (TEMPLATESENDJOBFINISH reports on it)."""

    def create_qr_code(self, scene: str, *, expire_seconds: int | None) -> QrTicket:
        """A string-scene QR code: temporary for ``expire_seconds``, permanent when None."""

    def follower_unionid(self, openid: str) -> str | None:
        """The follower's unionid (when the account is bound to the brand's open platform)."""

    def create_menu(self, menu: dict[str, Any]) -> None:
        """Replace the account's menu."""


# --- the mini-app (小程序) -----------------------------------------------------------------------


@dataclass(frozen=True)
class MiniAppSignIn:
    openid: str
    session_key: str
    unionid: str | None


@dataclass(frozen=True)
class SharedPhone:
    phone: str
    country_code: str


class MiniApp(Protocol):
    """The mini-app's server-side API."""

    def code_to_session(self, code: str) -> MiniAppSignIn:
        """``jscode2session`` for a ``wx.login`` code; ``Refused`` for a bad or used code."""

    def phone_number(self, code: str) -> SharedPhone:
        """The number the member chose to share (getPhoneNumber); ``Refused`` for a bad code."""

    def unlimited_code(self, scene: str, *, page: str | None = None) -> bytes:
        """A mini-app code image (PNG) opening ``page`` with ``scene`` (≤ 32 characters):
        ``getwxacodeunlimit``, which has no cap on the number of codes."""

    def send_subscribe(self, openid: str, template_id: str, data: dict[str, Any], *, page: str | None = None) -> int:
        """A subscribe message (``subscribeMessage.send``) using one of the member's grants; returns
        WeChat's msgid (0 if none). ``Refused`` 43101 when the member has no grant left."""


# --- SMS -----------------------------------------------------------------------------------------


class Sms(Protocol):
    """A text-message provider with templates approved in advance (Aliyun SMS in production)."""

    def send(self, phone: str, template_code: str, params: dict[str, str], *, out_id: str | None = None) -> str:
        """Send one templated SMS; returns the provider's message id. ``out_id`` is echoed in receipts."""


# --- WeChat Pay ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedPacketOrder:
    bill_no: str  # ≤ 28 characters; the same bill number is paid at most once
    openid: str
    amount_fen: int
    send_name: str
    act_name: str
    wishing: str
    remark: str
    client_ip: str


class Payments(Protocol):
    """WeChat Pay's cash red packets."""

    def send_red_packet(self, order: RedPacketOrder) -> str:
        """Pay the packet; returns WeChat's listid. ``Unavailable``: retry with the same bill number;
        ``PaymentRefused``: not paid, never will be."""

    def red_packet_status(self, bill_no: str) -> str | None:
        """SENDING, SENT, FAILED, RECEIVED, RFUND_ING or REFUND; None if WeChat never saw the bill."""


@dataclass(frozen=True)
class JsapiOrder:
    """A WeChat Pay order the member pays in the mini-app (统一下单, trade_type JSAPI)."""

    out_trade_no: str  # ≤ 32 characters; WeChat keeps one order per number
    openid: str  # the member's mini-app openid
    amount_fen: int
    description: str  # 商品描述, ≤ 127 bytes
    expires_at: dt.datetime  # UTC; WeChat refuses payment after it
    client_ip: str


@dataclass(frozen=True)
class PaidOrder:
    """What WeChat Pay says about one of our orders (a verified notification or an order query)."""

    out_trade_no: str
    #: SUCCESS (paid), NOTPAY, USERPAYING, CLOSED, REFUND, REVOKED, PAYERROR; None: WeChat never saw it
    state: str | None
    amount_fen: int = 0
    transaction_id: str | None = None
    paid_at: dt.datetime | None = None

    @property
    def paid(self) -> bool:
        return self.state in ("SUCCESS", "REFUND")


@dataclass(frozen=True)
class RefundResult:
    """What WeChat Pay says about one of our refunds (a decrypted refund notification or a refund query)."""

    out_trade_no: str
    out_refund_no: str
    #: SUCCESS (the money is back), PROCESSING, CHANGE (the payer's card refused it: the merchant must
    #: refund by other means), REFUNDCLOSE (closed); None: WeChat knows no such refund
    state: str | None
    refund_fen: int = 0
    refund_id: str | None = None
    refunded_at: dt.datetime | None = None

    @property
    def final(self) -> bool:
        return self.state in ("SUCCESS", "CHANGE", "REFUNDCLOSE")


#: Order query states after which the member can no longer pay.
UNPAYABLE = ("CLOSED", "REVOKED", "PAYERROR")


class BadSignature(Refused):
    """A payment notification whose signature does not verify (or that is not WeChat's XML)."""


class OrderPayments(Protocol):
    """WeChat Pay's merchant orders for the mini-app (API v2, the merchant key the red packets use)."""

    def create_jsapi_order(self, order: JsapiOrder) -> str:
        """统一下单: returns the prepay_id. The same ``out_trade_no`` with the same amount may be sent
        again (WeChat answers the same order); ``Unavailable``: retry later."""

    def jsapi_params(self, prepay_id: str) -> dict[str, str]:
        """The signed parameters ``wx.requestPayment`` takes (appId, timeStamp, nonceStr, package,
        signType, paySign)."""

    def parse_notification(self, body: bytes) -> PaidOrder:
        """A payment notification's XML, its signature verified; ``BadSignature`` otherwise."""

    def query_order(self, out_trade_no: str) -> PaidOrder:
        """订单查询 (reconciliation): ``state`` None when WeChat has no such order."""

    def close_order(self, out_trade_no: str) -> PaidOrder:
        """关单: afterwards the order can never be paid. When WeChat answers that it is paid
        (ORDERPAID) the answer is the paid order, as a query would give it."""

    def refund(self, out_trade_no: str, out_refund_no: str, total_fen: int, refund_fen: int) -> str:
        """申请退款 (merchant certificate): returns WeChat's refund id; the same ``out_refund_no``
        refunds once however often it is sent. Accepted is not done: the result comes later, in a
        refund notification or a refund query."""

    def parse_refund_notification(self, body: bytes) -> RefundResult:
        """A refund notification (退款结果通知: ``req_info`` encrypted with the merchant key) for our
        merchant and app, decrypted; ``BadSignature`` when it is not one."""

    def query_refund(self, out_refund_no: str) -> RefundResult:
        """查询退款 (reconciliation of a refund whose notification did not come): ``state`` None when
        WeChat has no such refund."""


# --- the central member record (CRM) -----------------------------------------------------------


@dataclass(frozen=True)
class CrmChange:
    """One outbox row as the CRM receives it: the CRM drops a repeated ``idempotency_key`` and
    expects a member's ``seq`` to grow (1, 2, 3…, with gaps only where an operator skipped a row)."""

    idempotency_key: str
    member_no: str
    seq: int
    kind: str
    occurred_at: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class CrmBucket:
    """The CRM's members whose number starts with ``prefix``: how many, and the MD5 of their
    sorted ``member_no:tier:balance`` lines joined by newlines (the same digest we compute)."""

    prefix: str
    count: int
    checksum: str


class Crm(Protocol):
    """The OEM's central member record: changes out, its export back for reconciliation."""

    def deliver(self, change: CrmChange) -> None:
        """Send one change. ``Refused``: the CRM rejected it (retrying will not help);
        ``Unavailable``: no usable answer, send it again later under the same key."""

    def export_buckets(self, prefix_length: int) -> list[CrmBucket]:
        """Counts and checksums per member-number prefix of ``prefix_length`` characters."""

    def export_members(self, prefix: str) -> dict[str, tuple[str, int]]:
        """The members of one bucket: member number → (tier, reward balance)."""


# --- partners that deliver benefits (roadside assistance, airport lounges) ---------------------


@dataclass(frozen=True)
class ServiceOrder:
    """What a delivering partner is asked for: one use of a service for one member (and car)."""

    out_order_no: str  # ours, unique: the partner answers a repeat with the order it already made
    service: str  # roadside, lounge, …
    member_no: str
    phone: str | None  # how the partner's agent reaches the member
    vin: str | None  # car-bound services (roadside assistance)


@dataclass(frozen=True)
class IssuedService:
    """The partner's answer: its order number and the code the member shows (or reads out)."""

    partner_order_no: str
    service_code: str
    expires_at: dt.datetime | None


class BenefitPartner(Protocol):
    """A partner that delivers a benefit and reports each use back (``POST /api/v1/partners/benefit-usage``)."""

    def issue(self, order: ServiceOrder) -> IssuedService:
        """Create (or find, by ``out_order_no``) the order and its service code."""

    def void(self, out_order_no: str) -> None:
        """Cancel the order's code before use; an order the partner does not know is already void.
        ``Refused`` with ``ALREADY_USED`` when the member used it in the meantime."""


#: The partner's answer to a void of a code that was used: the use stands.
ALREADY_USED = 40901

_PARTNER_KEY = "loyalty.gateways.benefit_partner"


def install_benefit_partner(app: Flask, gateway: BenefitPartner) -> None:
    """The delivering partner's gateway, chosen once at start-up (``app.benefits.register``)."""
    app.extensions[_PARTNER_KEY] = gateway


def benefit_partner(app: Flask | None = None) -> BenefitPartner:
    return (app or current_app).extensions[_PARTNER_KEY]


# --- which implementation ------------------------------------------------------------------------


@dataclass
class Gateways:
    official_account: OfficialAccount
    mini_app: MiniApp
    payments: Payments
    #: None when SMS is switched off (``LOYALTY_SMS_API_BASE`` empty): the channel is skipped.
    sms: Sms | None = None
    #: WeChat Pay orders (points + cash in the mall).
    pay_orders: OrderPayments | None = None


_KEY = "loyalty.gateways"


def install(app: Flask, gateways: Gateways) -> None:
    """The app's gateways, chosen once at start-up (``app.wechat.register``)."""
    app.extensions[_KEY] = gateways


def installed(app: Flask | None = None) -> Gateways:
    return (app or current_app).extensions[_KEY]


def official_account() -> OfficialAccount:
    return installed().official_account


def mini_app() -> MiniApp:
    return installed().mini_app


def payments() -> Payments:
    return installed().payments


def sms() -> Sms | None:
    return installed().sms


def pay_orders() -> OrderPayments:
    gateway = installed().pay_orders
    if gateway is None:
        raise Unavailable("WeChat Pay orders are not configured")
    return gateway


_CRM_KEY = "loyalty.gateways.crm"


def install_crm(app: Flask, gateway: Crm) -> None:
    """The CRM gateway, chosen once at start-up (``app.crm.register``)."""
    app.extensions[_CRM_KEY] = gateway


def crm(app: Flask | None = None) -> Crm:
    return (app or current_app).extensions[_CRM_KEY]
