"""The service-account callback protocol: signatures, freshness, replay, XML, safe mode, replies.

* URL signature: sha1 of the sorted (token, timestamp, nonce) — checked on every request.
* Safe mode (``encrypt_type=aes``): ``msg_signature`` also covers the encrypted body, which is
  AES-decrypted with ``LOYALTY_WECHAT_AES_KEY``; replies go back encrypted. With
  ``LOYALTY_WECHAT_SAFE_MODE_ONLY`` a plaintext callback is refused (403).
* Both signatures are compared in constant time (``hmac.compare_digest``; wechatpy uses ``!=``).
* Freshness: a timestamp more than 300 s away is refused; a nonce that already brought a
  *different* message is refused (in plaintext mode the signature does not cover the body). The
  inbox enforces it with a unique ``signed_nonce`` stored with the raw event, in the same INSERT,
  so it costs no extra round trip and holds without Redis. The same nonce with the same message is
  WeChat retrying: the inbox dedupe answers it.
* XML: parsed with defusedxml (no DTD, no entities, no external references), size-limited.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.events import EVENT_TYPES
from wechatpy.exceptions import InvalidAppIdException
from wechatpy.messages import MESSAGE_TYPES, UnknownMessage
from wechatpy.replies import ArticlesReply, TransferCustomerServiceReply
from wechatpy.utils import WeChatSigner

from app.core.errors import AppError, PayloadTooLarge
from app.core.i18n import _l
from app.core.security import sha256_hex
from app.wechat.replies import Articles, Reply, Text, TransferToAgent

log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 64 * 1024


class CallbackRejected(AppError):
    status = 403
    code = "callback_rejected"
    default_message = _l("The request signature is missing or invalid.")


class MalformedCallback(AppError):
    status = 400
    code = "malformed_callback"
    default_message = _l("The message could not be read.")


@dataclass(frozen=True)
class Envelope:
    """An authenticated callback: the plaintext XML and how to answer it."""

    xml: bytes
    encrypted: bool
    timestamp: str
    nonce: str


def _crypto(token: str, aes_key: str, app_id: str) -> WeChatCrypto:
    try:
        return WeChatCrypto(token, aes_key, app_id)
    except Exception as exc:  # pragma: no cover - a bad key is a deployment error, found at the first request
        raise RuntimeError("LOYALTY_WECHAT_AES_KEY is not a valid 43-character EncodingAESKey") from exc


def _sha1_signature(*parts: str) -> str:
    """WeChat's signature: sha1 of the sorted parts, concatenated (wechatpy's ``WeChatSigner``)."""
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def signatures_match(expected: str, given: str) -> bool:
    """Constant-time: how much of a forged signature is right must not show in the timing."""
    return hmac.compare_digest(expected.encode(), given.encode())


def verify_url(token: str, args: dict[str, str], *, window: int, now: float | None = None) -> None:
    """The signature every callback carries in its query string, and its timestamp window."""
    signature, timestamp, nonce = args.get("signature"), args.get("timestamp"), args.get("nonce")
    if not (signature and timestamp and nonce):
        raise CallbackRejected(details={"reason": "missing_signature"})
    if not signatures_match(_sha1_signature(token, timestamp, nonce), signature):
        raise CallbackRejected(details={"reason": "signature_mismatch"})
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise CallbackRejected(details={"reason": "bad_timestamp"}) from None
    if abs((time.time() if now is None else now) - sent_at) > window:
        raise CallbackRejected(details={"reason": "stale_timestamp"})


def signed_nonce(args: dict[str, str]) -> str:
    """The request's ``timestamp:nonce`` as the inbox keeps it (hashed if unusually long)."""
    key = f"{args.get('timestamp', '')}:{args.get('nonce', '')}"
    return key if len(key) <= 64 else hashlib.sha256(key.encode()).hexdigest()


def parse_xml(body: bytes) -> Element:
    """Hardened XML parsing: size limit, no DTD, no entities, one <xml> root."""
    if len(body) > MAX_CALLBACK_BYTES:
        raise PayloadTooLarge()
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, SyntaxError, ValueError) as exc:  # ParseError is a SyntaxError
        raise MalformedCallback(details={"reason": type(exc).__name__}) from None
    if root.tag != "xml":
        raise MalformedCallback(details={"reason": "root_not_xml"})
    return root


def open_envelope(
    body: bytes, args: dict[str, str], *, token: str, aes_key: str, app_id: str, safe_mode_only: bool = False
) -> Envelope:
    """Check what needs checking for the mode and return the plaintext XML."""
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
    if args.get("encrypt_type", "raw").lower() != "aes":
        if safe_mode_only:
            raise CallbackRejected(details={"reason": "plaintext_refused"})
        return Envelope(body, False, timestamp, nonce)  # read_message parses (and hardens) it
    root = parse_xml(body)
    if not aes_key:
        raise MalformedCallback(details={"reason": "safe_mode_not_configured"})
    msg_signature = args.get("msg_signature")
    if not msg_signature:
        raise CallbackRejected(details={"reason": "missing_msg_signature"})
    encrypted = root.findtext("Encrypt")
    if not encrypted:
        raise MalformedCallback(details={"reason": "missing_Encrypt"})
    if not signatures_match(_sha1_signature(token, timestamp, nonce, encrypted), msg_signature):
        raise CallbackRejected(details={"reason": "msg_signature_mismatch"})
    try:
        plain = PrpCrypto(_crypto(token, aes_key, app_id).key).decrypt(encrypted, app_id)
    except InvalidAppIdException:
        raise CallbackRejected(details={"reason": "wrong_app_id"}) from None
    except Exception as exc:  # corrupt base64 / padding / missing Encrypt element
        raise MalformedCallback(details={"reason": f"undecryptable: {type(exc).__name__}"}) from None
    plain_bytes = plain.encode() if isinstance(plain, str) else plain
    parse_xml(plain_bytes)
    return Envelope(plain_bytes, True, timestamp, nonce)


#: Latest CreateTime we believe (the year 2100): beyond it a timestamp is garbage, not a date.
_LATEST_TIMESTAMP = 4_102_444_800


def _digits(value: str | None, *, max_length: int) -> bool:
    return value is not None and value.isascii() and value.isdigit() and len(value) <= max_length


#: Fields read as plain text. Each must appear at most once, without attributes or child elements:
#: wechatpy (xmltodict) would turn those into dicts or lists that the handlers cannot read.
_TEXT_FIELDS = (
    "ToUserName", "FromUserName", "CreateTime", "MsgType", "MsgId", "MsgID", "Event", "EventKey",
    "Content", "Ticket", "Latitude", "Longitude", "Precision", "Location_X", "Location_Y", "Scale",
    "Label", "Status", "MediaId", "PicUrl", "Format", "Recognition", "Title", "Description", "Url",
)  # fmt: skip


def _check_text_fields(root: Element) -> None:
    for name in _TEXT_FIELDS:
        found = root.findall(name)
        if len(found) > 1 or (found and (len(found[0]) or found[0].attrib)):
            raise MalformedCallback(details={"reason": f"bad_{name}"})


def read_message(xml: bytes) -> Any:
    """A wechatpy message or event object; malformed content becomes a 400."""
    root = parse_xml(xml)
    _check_text_fields(root)
    for required in ("ToUserName", "FromUserName", "CreateTime", "MsgType"):
        if not (root.findtext(required) or "").strip():
            raise MalformedCallback(details={"reason": f"missing_{required}"})
    create_time = (root.findtext("CreateTime") or "").strip()
    if not _digits(create_time, max_length=10) or int(create_time) > _LATEST_TIMESTAMP:
        raise MalformedCallback(details={"reason": "bad_CreateTime"})
    for id_field in ("MsgId", "MsgID"):  # wechatpy reads these as integers
        value = root.findtext(id_field)
        if value is not None and not _digits(value.strip(), max_length=20):
            raise MalformedCallback(details={"reason": f"bad_{id_field}"})
    if len(root.findtext("FromUserName") or "") > 64:
        raise MalformedCallback(details={"reason": "bad_FromUserName"})
    try:
        return _wechatpy_message(_as_xmltodict(root))
    except Exception as exc:  # wechatpy trusts its input; anything odd is the sender's problem
        raise MalformedCallback(details={"reason": f"unparseable: {type(exc).__name__}"}) from None


def _as_xmltodict(element: Element) -> Any:
    """The element as ``xmltodict.parse`` gives it (text, None, or a dict of children and
    ``@attributes``), from the tree already parsed: wechatpy's ``parse_message`` would parse the
    XML a second time. A test holds the two equal."""
    item: dict[str, Any] | None = {f"@{name}": value for name, value in element.attrib.items()} or None
    for child in element:
        value = _as_xmltodict(child)
        if item is None:
            item = {}
        if child.tag not in item:
            item[child.tag] = value
        elif isinstance(item[child.tag], list):
            item[child.tag].append(value)
        else:
            item[child.tag] = [item[child.tag], value]
    text = ((element.text or "") + "".join(child.tail or "" for child in element)).strip() or None
    if item is None:
        return text
    if text:
        item["#text"] = text
    return item


def _wechatpy_message(fields: dict[str, Any]) -> Any:
    """wechatpy's ``parse_message`` (1.8.18) after its ``xmltodict.parse``: the message or event
    class for the fields, with ``subscribe`` + ``qrscene_`` as ``subscribe_scan``."""
    message_type = fields["MsgType"].lower()
    if message_type != "event" and not message_type.startswith("device_"):
        return MESSAGE_TYPES.get(message_type, UnknownMessage)(fields)
    event_type = fields["Event"].lower() if "Event" in fields else None
    if event_type is None and message_type.startswith("device_"):
        event_type = message_type
    elif message_type.startswith("device_"):
        event_type = f"device_{event_type}"
    if event_type == "subscribe" and fields.get("EventKey"):
        event_key = fields["EventKey"]
        if event_key.startswith(("scanbarcode|", "scanimage|")):
            event_type = fields["Event"] = "subscribe_scan_product"
        elif event_key.startswith("qrscene_"):
            event_type = fields["Event"] = "subscribe_scan"
            fields["EventKey"] = event_key[len("qrscene_") :]
    return EVENT_TYPES.get(event_type, UnknownMessage)(fields)


def dedupe_key(message: Any) -> str:
    """WeChat retries a message up to 3 times: MsgId for messages, sender+time+event(+hashed key) for events."""
    data = message._data  # the raw fields (validated by read_message); wechatpy converts some of them
    if message.type != "event" and (data.get("MsgId") or "").strip():
        return f"msg:{data['MsgId'].strip()}"
    # WeChat's advice is sender + CreateTime; the event and its key keep two different menu taps
    # in one second apart, while a retry (same XML) still maps to the same key.
    # Delivery reports carry the template message's MsgID: two reports in one second stay apart.
    # The event key is stored as a hash: a scanned order-QR scene carries the buyer's bearer secret,
    # which must exist at rest only as the encrypted raw body (and the token's own SHA-256).
    report = (data.get("MsgID") or "").strip()
    event_key = data.get("EventKey") or ""
    detail = f"k{sha256_hex(event_key)[:32]}" if event_key else report
    key = f"evt:{message.source}:{data.get('CreateTime')}:{data.get('Event', '')}:{detail}"
    return key[:128]


#: wechatpy's ``TextReply.render()``, field for field (a test holds the two equal): every callback
#: of a QR scan is answered with one, and wechatpy builds a reply object and its fields to print it.
_TEXT_REPLY = (
    "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[{content}]]></Content>\n"
    "<FromUserName><![CDATA[{source}]]></FromUserName>\n<ToUserName><![CDATA[{target}]]></ToUserName>\n"
    "<CreateTime>{time}</CreateTime>\n</xml>"
)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)  # wechatpy's to_text


def render(reply: Reply, message: Any, *, at: int | None = None) -> str:
    """Our reply as WeChat's passive-reply XML, stamped ``at`` (default: now)."""
    if isinstance(reply, Text):
        return _TEXT_REPLY.format(
            content=_text(reply.content),
            source=_text(message.target),
            target=_text(message.source),
            time=int(at if at else time.time()),
        )
    if isinstance(reply, Articles):
        articles = ArticlesReply(message=message)
        for article in reply.items[:8]:
            articles.add_article(
                {"title": article.title, "description": article.description, "image": article.image, "url": article.url}
            )
        return articles.render()
    if isinstance(reply, TransferToAgent):
        return TransferCustomerServiceReply(message=message).render()
    raise TypeError(f"cannot render {reply!r}")


def seal(reply_xml: str, envelope: Envelope, *, token: str, aes_key: str, app_id: str) -> str:
    """Encrypt the reply when the request came in safe mode."""
    if not envelope.encrypted:
        return reply_xml
    return _crypto(token, aes_key, app_id).encrypt_message(reply_xml, envelope.nonce, envelope.timestamp)
