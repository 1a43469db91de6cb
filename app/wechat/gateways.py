"""The real gateways: WeChat's HTTP APIs through wechatpy (``app.wechat.clients``).

Each method translates wechatpy's and requests' exceptions into the gateway errors of
``app.gateways``, so no caller ever sees wechatpy. Tested with ``responses`` against the request
and response shapes WeChat documents (``tests/test_wechat_gateways.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from wechatpy.exceptions import WeChatClientException
from wechatpy.pay import WeChatPay, WeChatPayException

from app.config import INSTANCE_DIR, Settings, settings_of
from app.core.clock import BUSINESS_TZ
from app.gateways import (
    Gateways,
    JsapiOrder,
    MiniAppSignIn,
    PaidOrder,
    PaymentRefused,
    QrTicket,
    RedPacketOrder,
    RefundResult,
    Refused,
    SharedPhone,
    Unavailable,
)
from app.gateways import install as install_gateways
from app.gateways.aliyun_sms import AliyunSms
from app.gateways.fakes import FakeMiniApp, FakeOfficialAccount, FakePayments, FakeSms
from app.wechat import pay_xml
from app.wechat.clients import (
    StableTokenClient,
    miniapp_client,
    official_client,
    pay_client,
    pay_miniapp_client,
    wechat_api_base,
)
from app.wechat.pay_sandbox import FakeOrderPayments

#: WeChat's answers to a login or phone code we cannot use (invalid, used, too frequent).
BAD_CODES = {40029, 40163, 45011, 40226, 40013}
#: Pay errors after which the same bill number must simply be tried again ("请使用原单号重试").
RETRY_SAME_BILL = {"SYSTEMERROR", "PROCESSING", "FREQ_LIMIT", "SENDNUMLIMIT_RETRY"}
#: The first bytes of every PNG file: what getwxacodeunlimit sends when it succeeds.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: What the sandbox fakes were asked to send under ``make run`` (``flask wechat sandbox-calls``).
SANDBOX_JOURNAL = INSTANCE_DIR / "sandbox-calls.jsonl"


@contextmanager
def _wechat_errors() -> Iterator[None]:
    """WeChat said no → ``Refused`` with its errcode; no answer → ``Unavailable``."""
    try:
        yield
    except WeChatClientException as exc:
        raise Refused(str(exc.errmsg or ""), code=exc.errcode) from exc
    except (requests.RequestException, ValueError) as exc:
        raise Unavailable(type(exc).__name__) from exc


class WeChatOfficialAccount:
    def __init__(self, client: Callable[[], StableTokenClient] = official_client) -> None:
        self._client = client

    def send_text(self, openid: str, content: str) -> None:
        with _wechat_errors():
            self._client().message.send_text(openid, content)

    def send_articles(self, openid: str, articles: list[dict[str, Any]]) -> None:
        with _wechat_errors():
            self._client().message.send_articles(openid, articles[:1])

    def send_template(self, openid: str, template_id: str, data: dict[str, Any], *, url: str | None = None) -> int:
        with _wechat_errors():
            result = self._client().message.send_template(openid, template_id, data, url=url)
        return int(result.get("msgid", 0))

    def create_qr_code(self, scene: str, *, expire_seconds: int | None) -> QrTicket:
        if expire_seconds is None:
            body = {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": scene}}}
        else:
            body = {
                "expire_seconds": expire_seconds,
                "action_name": "QR_STR_SCENE",
                "action_info": {"scene": {"scene_str": scene}},
            }
        with _wechat_errors():
            result = self._client().qrcode.create(body)
        seconds = result.get("expire_seconds", expire_seconds)
        return QrTicket(result["ticket"], result["url"], None if seconds is None else int(seconds))

    def follower_unionid(self, openid: str) -> str | None:
        with _wechat_errors():
            return self._client().user.get(openid).get("unionid")

    def create_menu(self, menu: dict[str, Any]) -> None:
        with _wechat_errors():
            self._client().menu.create(menu)


class WeChatMiniApp:
    def __init__(self, app_id: str, app_secret: str, timeout: float) -> None:
        self.app_id, self.app_secret, self.timeout = app_id, app_secret, timeout

    def code_to_session(self, code: str) -> MiniAppSignIn:
        """Called directly: wechatpy's helper would fetch an access token this call does not need."""
        try:
            response = miniapp_client()._http.get(
                f"{wechat_api_base()}/sns/jscode2session",
                params={
                    "appid": self.app_id,
                    "secret": self.app_secret,
                    "js_code": code,
                    "grant_type": "authorization_code",
                },
                timeout=self.timeout,
            )
            response.raise_for_status()
            result = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise Unavailable(type(exc).__name__) from exc
        if result.get("errcode"):
            error = Refused if result["errcode"] in BAD_CODES else Unavailable
            raise error(str(result.get("errmsg", "")), code=result["errcode"])
        if not result.get("openid") or not result.get("session_key"):
            raise Unavailable("jscode2session answered without openid or session_key")
        return MiniAppSignIn(result["openid"], result["session_key"], result.get("unionid"))

    def phone_number(self, code: str) -> SharedPhone:
        with _wechat_errors():
            result = miniapp_client().post(
                "wxa/business/getuserphonenumber", data={"code": code}, api_base_url=f"{wechat_api_base()}/"
            )
        info = result.get("phone_info") or {}
        phone = info.get("purePhoneNumber") or info.get("phoneNumber") or ""
        return SharedPhone(phone, str(info.get("countryCode") or "86"))

    def unlimited_code(self, scene: str, *, page: str | None = None) -> bytes:
        """``wxa/getwxacodeunlimit``: WeChat answers with the image itself, or JSON with an errcode."""
        data: dict[str, Any] = {"scene": scene, "check_path": False, "env_version": "release"}
        if page:
            data["page"] = page
        with _wechat_errors():
            result = miniapp_client().post("wxa/getwxacodeunlimit", data=data, api_base_url=f"{wechat_api_base()}/")
        content = getattr(result, "content", None)
        if not isinstance(content, bytes) or not content.startswith(PNG_SIGNATURE):
            raise Unavailable("getwxacodeunlimit answered without an image")
        return content

    def send_subscribe(self, openid: str, template_id: str, data: dict[str, Any], *, page: str | None = None) -> int:
        """``cgi-bin/message/subscribe/send``; 43101 (no grant left) comes out as ``Refused``."""
        body: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": data, "lang": "zh_CN"}
        if page:
            body["page"] = page
        with _wechat_errors():
            result = miniapp_client().post("message/subscribe/send", data=body)
        return int(result.get("msgid") or 0)


class WeChatPayments:
    def send_red_packet(self, order: RedPacketOrder) -> str:
        try:
            result = pay_client().redpack.send(
                user_id=order.openid,
                total_amount=order.amount_fen,
                send_name=order.send_name,
                act_name=order.act_name,
                wishing=order.wishing,
                remark=order.remark,
                client_ip=order.client_ip,
                out_trade_no=order.bill_no,
            )
        except WeChatPayException as exc:
            code = (exc.errcode or exc.result_code or exc.return_code or "UNKNOWN").upper()
            message = str(exc.errmsg or exc.return_msg or "")
            if code in RETRY_SAME_BILL or exc.return_code != "SUCCESS":
                raise Unavailable(message, code=code) from exc
            raise PaymentRefused(message, code=code) from exc
        except requests.RequestException as exc:
            raise Unavailable(type(exc).__name__) from exc
        return str(result.get("send_listid", ""))

    def red_packet_status(self, bill_no: str) -> str | None:
        try:
            info = pay_client().redpack.query(bill_no)
        except WeChatPayException as exc:
            if (exc.errcode or "").upper() == "NOT_FOUND":
                return None
            raise Unavailable(str(exc.errmsg or ""), code=exc.errcode) from exc
        except requests.RequestException as exc:
            raise Unavailable(type(exc).__name__) from exc
        return str(info.get("status", "")).upper()


#: Order errors after which the same call may simply be made again.
RETRY_ORDER = {"SYSTEMERROR", "BIZERR_NEED_RETRY", "USERPAYING", "FREQUENCY_LIMITED", "NOTENOUGH"}


@contextmanager
def _pay_errors() -> Iterator[None]:
    """A WeChat Pay order call's failures in our terms: a code worth retrying, no answer or a
    FAIL return code → ``Unavailable``; any other business code → ``Refused`` with it."""
    try:
        yield
    except WeChatPayException as exc:
        code = (exc.errcode or exc.result_code or exc.return_code or "UNKNOWN").upper()
        message = str(exc.errmsg or exc.return_msg or "")
        if exc.return_code != "SUCCESS" or code in RETRY_ORDER:
            raise Unavailable(message, code=code) from exc
        raise Refused(message, code=code) from exc
    except requests.RequestException as exc:
        raise Unavailable(type(exc).__name__) from exc


class WeChatOrderPayments:
    """WeChat Pay API v2 orders for the mini-app (JSAPI), through wechatpy: the merchant key and
    certificate the red packets already use."""

    def __init__(self, api_key: str, notify_url: str, client: Callable[[], WeChatPay] = pay_miniapp_client) -> None:
        self._api_key = api_key
        self._notify_url = notify_url
        self._client = client

    def create_jsapi_order(self, order: JsapiOrder) -> str:
        with _pay_errors():
            result = self._client().order.create(
                trade_type="JSAPI",
                body=order.description[:40],
                total_fee=order.amount_fen,
                notify_url=self._notify_url,
                client_ip=order.client_ip,
                user_id=order.openid,
                out_trade_no=order.out_trade_no,
                time_expire=order.expires_at.astimezone(BUSINESS_TZ),
            )
        return str(result["prepay_id"])

    def jsapi_params(self, prepay_id: str) -> dict[str, str]:
        return dict(self._client().jsapi.get_jsapi_params(prepay_id))

    def parse_notification(self, body: bytes) -> PaidOrder:
        return pay_xml.paid_order(pay_xml.verified(body, self._api_key))

    def query_order(self, out_trade_no: str) -> PaidOrder:
        try:
            with _pay_errors():
                result = self._client().order.query(out_trade_no=out_trade_no)
        except Refused as exc:
            if exc.code == "ORDERNOTEXIST":
                return PaidOrder(out_trade_no, None)
            raise
        return pay_xml.paid_order(result, state=str(result.get("trade_state") or "").upper() or None)

    def close_order(self, out_trade_no: str) -> PaidOrder:
        try:
            with _pay_errors():
                self._client().order.close(out_trade_no)
        except Refused as exc:
            if exc.code == "ORDERPAID":
                return self.query_order(out_trade_no)
            if exc.code == "ORDERCLOSED":
                return PaidOrder(out_trade_no, "CLOSED")
            raise
        return PaidOrder(out_trade_no, "CLOSED")

    def refund(self, out_trade_no: str, out_refund_no: str, total_fen: int, refund_fen: int) -> str:
        with _pay_errors():
            result = self._client().refund.apply(
                total_fee=total_fen,
                refund_fee=refund_fen,
                out_refund_no=out_refund_no,
                out_trade_no=out_trade_no,
                notify_url=refund_notify_url(self._notify_url),
            )
        return str(result.get("refund_id", ""))

    def parse_refund_notification(self, body: bytes) -> RefundResult:
        client = self._client()
        return pay_xml.refund_notification(body, self._api_key, app_id=client.appid, mch_id=client.mch_id)

    def query_refund(self, out_refund_no: str) -> RefundResult:
        try:
            with _pay_errors():
                result = self._client().refund.query(out_refund_no=out_refund_no)
        except Refused as exc:
            if exc.code == "REFUNDNOTEXIST":
                return RefundResult("", out_refund_no, None)
            raise
        return pay_xml.refund_result(result, suffix="_0")


def refund_notify_url(payment_notify_url: str) -> str:
    """Refund results are posted beside the payment notifications: ``…/wechat-pay/refund-notifications``."""
    return payment_notify_url.rsplit("/", 1)[0] + "/refund-notifications"


def for_settings(settings: Settings, journal: Path | None = None) -> Gateways:
    """Real gateways, or the in-process fakes where the settings say ``sandbox``."""
    official = FakeOfficialAccount(journal) if settings.wechat_sandbox else WeChatOfficialAccount()
    if settings.wechat_sandbox:
        mini: Any = FakeMiniApp(journal)
    else:
        mini = WeChatMiniApp(settings.MINIAPP_APP_ID, settings.MINIAPP_APP_SECRET, settings.WECHAT_HTTP_TIMEOUT)
    payments = FakePayments(journal) if settings.pay_sandbox else WeChatPayments()
    if settings.pay_sandbox:
        orders: Any = FakeOrderPayments(settings.WECHAT_PAY_API_KEY, journal)
    else:
        orders = WeChatOrderPayments(settings.WECHAT_PAY_API_KEY, settings.WECHAT_PAY_NOTIFY_URL)
    return Gateways(
        official_account=official,
        mini_app=mini,
        payments=payments,
        sms=sms_for_settings(settings, journal),
        pay_orders=orders,
    )


def sms_for_settings(settings: Settings, journal: Path | None = None) -> Any:
    """The logging fake for "sandbox", Aliyun SMS for a real base, None (channel off) for none."""
    if settings.sms_sandbox:
        return FakeSms(journal)
    if not settings.SMS_API_BASE:
        return None
    return AliyunSms(
        settings.SMS_API_BASE,
        settings.SMS_ACCESS_KEY_ID,
        settings.SMS_ACCESS_KEY_SECRET,
        settings.SMS_SIGN_NAME,
        timeout=settings.WECHAT_HTTP_TIMEOUT,
    )


def install(app: Flask) -> None:
    """Choose the gateways once, at start-up (development journals the fakes' calls)."""
    settings = settings_of(app)
    journal = SANDBOX_JOURNAL if settings.ENV == "development" else None
    install_gateways(app, for_settings(settings, journal))
