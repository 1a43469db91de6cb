"""The mini-app's WeChat calls: ``jscode2session`` (sign-in) and the phone-number code."""

from __future__ import annotations

from typing import Any

import requests
from wechatpy.exceptions import WeChatClientException

from app.config import current_settings
from app.core.errors import ServiceUnavailable, Unauthenticated, ValidationFailed
from app.core.i18n import _l
from app.wechat.clients import miniapp_client, wechat_api_base

#: WeChat's answers to a login code we cannot use (invalid, used, too frequent for this user).
BAD_CODE = {40029, 40163, 45011, 40226}


def code_to_session(code: str) -> dict[str, Any]:
    """openid, session_key and (when the accounts are bound) unionid for a ``wx.login`` code.

    Called directly: wechatpy's helper would fetch an access token this call does not need.
    """
    settings = current_settings()
    try:
        response = miniapp_client()._http.get(
            f"{wechat_api_base()}/sns/jscode2session",
            params={
                "appid": settings.MINIAPP_APP_ID,
                "secret": settings.MINIAPP_APP_SECRET,
                "js_code": code,
                "grant_type": "authorization_code",
            },
            timeout=settings.WECHAT_HTTP_TIMEOUT,
        )
        response.raise_for_status()
        result = response.json()
    except (requests.RequestException, ValueError):
        raise ServiceUnavailable(_l("WeChat did not answer. Please try again.")) from None
    if result.get("errcode"):
        if result["errcode"] in BAD_CODE:
            raise Unauthenticated(_l("This sign-in code is invalid or was already used. Please try again."))
        raise ServiceUnavailable(_l("WeChat did not answer. Please try again."))
    if not result.get("openid") or not result.get("session_key"):
        raise ServiceUnavailable(_l("WeChat did not answer. Please try again."))
    return result


def phone_number(code: str) -> dict[str, str]:
    """The number the member chose to share (``getPhoneNumber`` button), as WeChat reports it."""
    try:
        result = miniapp_client().post(
            "wxa/business/getuserphonenumber", data={"code": code}, api_base_url=f"{wechat_api_base()}/"
        )
    except WeChatClientException as exc:
        if exc.errcode in (40029, 40013, 45011):
            raise ValidationFailed(fields={"phone_code": [_l("This phone code is invalid or expired.")]}) from None
        raise ServiceUnavailable(_l("WeChat did not answer. Please try again.")) from None
    except requests.RequestException:
        raise ServiceUnavailable(_l("WeChat did not answer. Please try again.")) from None
    info = result.get("phone_info") or {}
    return {
        "phone": info.get("purePhoneNumber") or info.get("phoneNumber") or "",
        "country_code": str(info.get("countryCode") or "86"),
    }
