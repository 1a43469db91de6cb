"""WeChat HTTP clients, configured from settings: used by the real gateways (``app.wechat.gateways``).

* ``official_client()`` — the service account (公众号): QR codes, menu, template and customer
  messages. Its access token lives in Redis and is fetched with ``cgi-bin/stable_token`` (which
  wechatpy 1.8.18 lacks) by one process at a time, behind a Redis lock.
* ``miniapp_client()`` — the mini-app (小程序): ``jscode2session``, phone numbers, subscribe messages.
* ``pay_client()`` — WeChat Pay for red packets (client certificate from the settings).
* ``pay_miniapp_client()`` — WeChat Pay orders paid in the mini-app (same merchant, mini-app appid).

All of them time out (``LOYALTY_WECHAT_HTTP_TIMEOUT``). Only the real gateways
(``app.wechat.gateways``) use them; in sandbox mode the in-process fakes stand in.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from flask import Flask, current_app
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException
from wechatpy.pay import WeChatPay
from wechatpy.session.redisstorage import RedisStorage

from app.config import current_settings
from app.extensions import redis_client

log = logging.getLogger(__name__)

#: Refresh this long before WeChat says the token expires, so no request carries a dying token.
TOKEN_SAFETY_SECONDS = 300


#: WeChat's answers for a token it no longer accepts (invalid credential, invalid token, expired).
TOKEN_REJECTED = (40001, 40014, 42001)


class StableTokenClient(WeChatClient):
    """``WeChatClient`` whose token comes from ``cgi-bin/stable_token``, refreshed by one process at a time.

    Every process reads the token from Redis; the key's TTL (a little shorter than WeChat's validity)
    is the only clock. A missing key is fetched in normal mode, which returns the still-valid token
    if there is one, so processes never invalidate each other's tokens. Only a token WeChat rejected
    (40001/40014/42001, which wechatpy answers by calling ``fetch_access_token``) and that is still
    the current one forces a refresh; whoever waited behind the Redis lock finds the new token.
    """

    _rejected_token: str | None = None
    #: Per thread: a call is being retried after a token refresh (one retry only, then the error).
    _retrying = threading.local()

    @property
    def access_token(self) -> str:
        token = self.session.get(self.access_token_key)
        if not token:
            self.fetch_access_token()
            token = self.session.get(self.access_token_key)
        return token

    def __init__(self, appid: str, secret: str, *, redis_client: redis.Redis, api_base: str, timeout: float) -> None:
        super().__init__(appid, secret, session=RedisStorage(redis_client, prefix="wechat"), timeout=timeout)
        self.redis = redis_client
        self.api_base = api_base.rstrip("/")
        self.API_BASE_URL = f"{self.api_base}/cgi-bin/"
        self.wxa.API_BASE_URL = f"{self.api_base}/"  # type: ignore[attr-defined]

    def _handle_result(
        self, res: Any, method: Any = None, url: Any = None, result_processor: Any = None, **kwargs: Any
    ):
        result = res if isinstance(res, dict) else self._decode_result(res)
        if isinstance(result, dict) and str(result.get("errcode", "0")) in {str(code) for code in TOKEN_REJECTED}:
            if getattr(self._retrying, "active", False):  # refreshed once already: give up, the caller retries later
                raise WeChatClientException(
                    int(result["errcode"]), result.get("errmsg"), client=self, request=getattr(res, "request", None)
                )
            self._rejected_token = (kwargs.get("params") or {}).get("access_token")
            self._retrying.active = True
            try:
                return super()._handle_result(res, method, url, result_processor, **kwargs)
            finally:
                self._retrying.active = False
        return super()._handle_result(res, method, url, result_processor, **kwargs)

    def fetch_access_token(self) -> dict[str, Any]:
        lock = self.redis.lock(f"wechat:token-refresh:{self.appid}", timeout=15, blocking_timeout=10)
        with lock:
            current = self.session.get(self.access_token_key)
            rejected, self._rejected_token = self._rejected_token, None
            if current and current != rejected:
                return {"access_token": current}  # valid as far as we know (perhaps just refreshed elsewhere)
            response = self._http.post(
                f"{self.api_base}/cgi-bin/stable_token",
                json={
                    "grant_type": "client_credential",
                    "appid": self.appid,
                    "secret": self.secret,
                    # Force only when WeChat refused the current token (forcing is rate-limited and
                    # invalidates the token every other process is using).
                    "force_refresh": bool(current),
                },
                timeout=self.timeout,
            )
            response.raise_for_status()
            result = response.json()
            if result.get("errcode"):
                raise WeChatClientException(
                    result["errcode"], result.get("errmsg"), client=self, request=response.request, response=response
                )
            expires_in = int(result.get("expires_in", 7200))
            # Near the end of a token's life, normal mode returns it with the little time it has left.
            ttl = (
                expires_in - TOKEN_SAFETY_SECONDS if expires_in > 2 * TOKEN_SAFETY_SECONDS else max(30, expires_in // 2)
            )
            self.session.set(self.access_token_key, result["access_token"], ttl)
            log.info("fetched a stable access token for %s (valid %ss)", self.appid, ttl)
            return result


def wechat_api_base() -> str:
    return current_settings().WECHAT_API_BASE.rstrip("/")


def pay_api_base() -> str:
    return current_settings().WECHAT_PAY_API_BASE.rstrip("/")


def _cached(name: str, build: Any) -> Any:
    cache = current_app.extensions.setdefault("loyalty.wechat_clients", {})
    if name not in cache:
        cache[name] = build()
    return cache[name]


def _stable_client(name: str, app_id: str, app_secret: str) -> StableTokenClient:
    settings = current_settings()
    return _cached(
        name,
        lambda: StableTokenClient(
            app_id,
            app_secret,
            redis_client=redis_client(),
            api_base=wechat_api_base(),
            timeout=settings.WECHAT_HTTP_TIMEOUT,
        ),
    )


def official_client() -> StableTokenClient:
    settings = current_settings()
    return _stable_client("official", settings.WECHAT_APP_ID, settings.WECHAT_APP_SECRET)


def miniapp_client() -> StableTokenClient:
    settings = current_settings()
    return _stable_client("miniapp", settings.MINIAPP_APP_ID, settings.MINIAPP_APP_SECRET)


def _pay(name: str, app_id: str) -> WeChatPay:
    settings = current_settings()

    def build() -> WeChatPay:
        client = WeChatPay(
            appid=app_id,
            api_key=settings.WECHAT_PAY_API_KEY,
            mch_id=settings.WECHAT_PAY_MCH_ID,
            mch_cert=settings.WECHAT_PAY_CERT_PATH or None,
            mch_key=settings.WECHAT_PAY_KEY_PATH or None,
            timeout=settings.WECHAT_HTTP_TIMEOUT,
        )
        client.API_BASE_URL = pay_api_base() + "/"
        return client

    return _cached(name, build)


def pay_client() -> WeChatPay:
    return _pay("pay", current_settings().WECHAT_APP_ID)


def pay_miniapp_client() -> WeChatPay:
    """WeChat Pay for the mini-app's orders: the same merchant, the mini-app's appid (JSAPI)."""
    return _pay("pay_miniapp", current_settings().MINIAPP_APP_ID)


def forget_clients(app: Flask) -> None:
    """Drop cached clients (tests switch bases; ``flask serve`` learns its address late)."""
    app.extensions.pop("loyalty.wechat_clients", None)


__all__ = [
    "StableTokenClient",
    "forget_clients",
    "miniapp_client",
    "official_client",
    "pay_client",
    "pay_miniapp_client",
]
