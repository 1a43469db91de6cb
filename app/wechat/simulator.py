"""Play WeChat against a running server: build a message, sign it like WeChat, post, show the reply.

flask wechat simulate subscribe --scene adv:SA0101
flask wechat simulate text 积分 --openid o-demo-1
flask wechat simulate click my_tier
flask wechat simulate location --lat 43.88 --lng 125.28
flask wechat simulate text 积分 --aes        # safe mode (needs LOYALTY_WECHAT_AES_KEY)
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import requests
from wechatpy.crypto import WeChatCrypto


def message_xml(kind: str, openid: str, app_id: str, **fields: Any) -> str:
    """A callback body as WeChat sends it, for an event or a text message."""
    now = int(time.time())
    parts = [
        f"<ToUserName><![CDATA[{app_id}]]></ToUserName>",
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>",
        f"<CreateTime>{now}</CreateTime>",
    ]
    if kind == "text":
        parts += [
            "<MsgType><![CDATA[text]]></MsgType>",
            f"<Content><![CDATA[{fields['content']}]]></Content>",
            f"<MsgId>{fields.get('msg_id') or secrets.randbelow(10**15)}</MsgId>",
        ]
    elif kind == "location":
        parts += [
            "<MsgType><![CDATA[event]]></MsgType>",
            "<Event><![CDATA[LOCATION]]></Event>",
            f"<Latitude>{fields['lat']}</Latitude>",
            f"<Longitude>{fields['lng']}</Longitude>",
            "<Precision>30.0</Precision>",
        ]
    else:
        event = {"subscribe": "subscribe", "scan": "SCAN", "unsubscribe": "unsubscribe", "click": "CLICK"}[kind]
        parts += ["<MsgType><![CDATA[event]]></MsgType>", f"<Event><![CDATA[{event}]]></Event>"]
        key = fields.get("key") or ""
        if kind == "subscribe" and key:
            key = f"qrscene_{key}"
        if key:
            parts.append(f"<EventKey><![CDATA[{key}]]></EventKey>")
    return "<xml>" + "".join(parts) + "</xml>"


def signed_query(token: str, timestamp: str | None = None, nonce: str | None = None) -> dict[str, str]:
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or secrets.token_hex(8)
    signature = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()  # noqa: S324 - WeChat's algorithm
    return {"signature": signature, "timestamp": timestamp, "nonce": nonce}


def encrypt(xml: str, query: dict[str, str], *, token: str, aes_key: str, app_id: str) -> tuple[str, dict[str, str]]:
    """Safe mode: the body WeChat would send, and the query with ``msg_signature``."""
    sealed = WeChatCrypto(token, aes_key, app_id).encrypt_message(xml, query["nonce"], query["timestamp"])
    from defusedxml.ElementTree import fromstring

    root = fromstring(sealed)
    body = (
        f"<xml><ToUserName><![CDATA[{app_id}]]></ToUserName>"
        f"<Encrypt><![CDATA[{root.findtext('Encrypt')}]]></Encrypt></xml>"
    )
    return body, {**query, "encrypt_type": "aes", "msg_signature": root.findtext("MsgSignature") or ""}


def post(url: str, xml: str, *, token: str, aes_key: str, app_id: str, aes: bool) -> tuple[int, str]:
    query = signed_query(token)
    body = xml
    if aes:
        body, query = encrypt(xml, query, token=token, aes_key=aes_key, app_id=app_id)
    response = requests.post(url, params=query, data=body.encode(), timeout=10, headers={"Content-Type": "text/xml"})
    text = response.text
    if aes and response.ok and "<Encrypt>" in text:
        text = WeChatCrypto(token, aes_key, app_id).decrypt_message(
            text, _field(text, "MsgSignature"), _field(text, "TimeStamp"), _field(text, "Nonce")
        )
    return response.status_code, text


def _field(xml: str, name: str) -> str:
    from defusedxml.ElementTree import fromstring

    return fromstring(xml).findtext(name) or ""
