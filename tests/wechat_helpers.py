"""Send callbacks the way WeChat does, in plaintext or safe (AES) mode."""

from __future__ import annotations

import secrets
import time
from typing import Any

from defusedxml.ElementTree import fromstring
from wechatpy.crypto import WeChatCrypto

from app.wechat import simulator
from tests.conftest import WECHAT

APP_ID, TOKEN, AES_KEY = WECHAT["WECHAT_APP_ID"], WECHAT["WECHAT_TOKEN"], WECHAT["WECHAT_AES_KEY"]


def xml(kind: str, openid: str, **fields: Any) -> str:
    return simulator.message_xml(kind, openid, APP_ID, **fields)


def event_xml(openid: str, event: str, create_time: int | None = None, **extra: str) -> str:
    body = "".join(f"<{k}><![CDATA[{v}]]></{k}>" if isinstance(v, str) else f"<{k}>{v}</{k}>" for k, v in extra.items())
    return (
        f"<xml><ToUserName><![CDATA[{APP_ID}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event>{body}</xml>"
    )


def text_xml(openid: str, content: str, msg_id: int | None = None) -> str:
    return simulator.message_xml("text", openid, APP_ID, content=content, msg_id=msg_id or secrets.randbelow(10**15))


class Callback:
    """Posts to /wechat/callback through the Flask test client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def post(self, body: str | bytes, *, aes: bool = False, query: dict[str, str] | None = None, **kwargs: Any) -> Any:
        text = body.decode() if isinstance(body, bytes) else body
        params = query or simulator.signed_query(TOKEN)
        if aes:
            text, params = simulator.encrypt(text, params, token=TOKEN, aes_key=AES_KEY, app_id=APP_ID)
        return self.client.post(
            "/wechat/callback", query_string=params, data=text.encode(), content_type="text/xml", **kwargs
        )

    def reply(self, body: str, *, aes: bool = False) -> dict[str, str]:
        """The reply's fields (decrypted in safe mode); {} for "success"."""
        response = self.post(body, aes=aes)
        assert response.status_code == 200, response.get_data(as_text=True)
        return parse_reply(response.get_data(as_text=True), aes=aes)


def parse_reply(text: str, *, aes: bool = False) -> dict[str, str]:
    if text == "success":
        return {}
    if aes:
        root = fromstring(text)
        text = WeChatCrypto(TOKEN, AES_KEY, APP_ID).decrypt_message(
            text, root.findtext("MsgSignature"), root.findtext("TimeStamp"), root.findtext("Nonce")
        )
    root = fromstring(text)
    fields = {child.tag: (child.text or "") for child in root}
    if root.find("Articles") is not None:
        fields["Articles"] = " | ".join(item.findtext("Title") or "" for item in root.iter("item"))
    return fields


class SentMessages:
    """What the service sent through the (fake) service account: customer and template messages,
    and the followers whose unionid it asked for (each follower's unionid is union-<openid>)."""

    def __init__(self, official: Any) -> None:
        self.official = official
        official.unionid_of = lambda openid: f"union-{openid}"

    @property
    def custom(self) -> list[dict]:
        return [call for call in self.official.calls if call["api"] in ("custom.text", "custom.news")]

    @property
    def templates(self) -> list[dict]:
        return self.official.templates()

    @property
    def user_info(self) -> list[str]:
        return [call["openid"] for call in self.official.of("user.info")]

    def texts_to(self, openid: str) -> list[str]:
        return self.official.texts_to(openid)

    def last_text_to(self, openid: str) -> str:
        texts = self.texts_to(openid)
        assert texts, f"no customer message to {openid}: {self.custom}"
        return texts[-1]


def use_real_wechat(app: Any, monkeypatch: Any) -> Any:
    """Point ``app`` at the real WeChat and WeChat Pay APIs (their gateways and clients) for one test;
    ``responses`` answers, and an unmatched request fails the test."""
    import dataclasses

    from app import gateways
    from app.config import settings_of
    from app.wechat import clients
    from app.wechat.gateways import for_settings

    settings = dataclasses.replace(
        settings_of(app),
        WECHAT_API_BASE="https://api.weixin.qq.com",
        WECHAT_PAY_API_BASE="https://api.mch.weixin.qq.com",
    )
    monkeypatch.setitem(app.extensions, "loyalty.settings", settings)
    monkeypatch.setitem(app.extensions, "loyalty.gateways", for_settings(settings))
    clients.forget_clients(app)
    return gateways.installed(app)
