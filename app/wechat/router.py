"""From an authenticated callback message to a reply, exactly once, within WeChat's 5 seconds.

The raw message is stored in the inbox first (encrypted, ``source="wechat"``) under WeChat's own
dedupe key; a retry of the same message finds the row and gets the same reply.

* Questions (积分, 等级, menu clicks, locations, unknown text) are answered at once from the
  read models, in a savepoint: if a handler fails the raw event is still kept and the member gets
  a polite answer.
* Enrollment and red packets (a QR scene scanned, a campaign password sent) are *deferred*: the
  callback acknowledges at once and the inbox drain (``app.jobs.drain``) does the work and sends
  the real answer as a customer-service message. If Redis is down, the event waits in the inbox and
  the sweeper picks it up.
* A per-sender limit (``LOYALTY_WECHAT_CALLBACK_RATE_LIMIT``, counted in Redis, fails open): every callback
  counts, but only a *new* message is refused. Below half the limit a sender's hits are counted in
  the process and sent to Redis in the background (``ratelimit.LocalFront``: no round trip on the
  path of a launch-day scan); from there on each hit waits for Redis's count. Over the limit the
  message is stored and marked processed with outcome ``rate_limited`` (nothing routed, no job, no
  reply: WeChat gets ``success``), in the request's transaction so no drain can see it waiting. A retry of a message
  stored earlier still gets its stored reply (or its acknowledgement), over the limit or not; a
  retry of a rate-limited message stays unanswered.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.campaigns import redpackets, signup
from app.care import notify, preferences
from app.config import current_settings
from app.core import inbox, ratelimit
from app.core.clock import utcnow
from app.core.db import db
from app.core.i18n import _, use_member_locale
from app.jobs import drain
from app.members import identities, registration
from app.members.models import Member, WechatIdentity
from app.wechat import conversation, protocol, scenes
from app.wechat.replies import Reply, Text

log = logging.getLogger(__name__)

#: The outcome of a message stored over the limit and never processed.
RATE_LIMITED = "rate_limited"


def handle(message: Any, raw_xml: bytes, signed_nonce: str) -> str | None:
    """The passive-reply XML for this message (None: answer "success")."""
    stored = StoredAs(protocol.dedupe_key(message), _kind(message), raw_xml, _created_at(message), signed_nonce)
    # A setting, not a program setting: reading one would hold a database connection for the whole
    # request, and the QR-scan hot path uses none (its INSERT is autocommitted outside the session).
    if not ratelimit.allow("wechat-callback", message.source, current_settings().WECHAT_CALLBACK_RATE_LIMIT):
        return _over_the_limit(message, stored)
    if is_deferred(message):
        return _store_deferred(message, stored)
    event_id = _store(stored, inbox.store_event)
    if event_id is None:  # a retry: the same answer as the first time
        previous = inbox.stored_response("wechat", stored.key)
        return previous.decode() if previous else None
    try:
        with db.session.begin_nested():
            reply = route(message, stored.occurred_at)
            rendered = protocol.render(reply, message) if reply is not None else None
    except Exception as exc:
        log.exception("wechat callback handler failed for %s", stored.key)
        # Answered politely; the member can ask again. Kept for an operator, not retried.
        inbox.mark(event_id, status=inbox.DEAD, attempts=1, last_error=f"{type(exc).__name__}: {exc}"[:2000])
        return protocol.render(Text(_("Sorry, something went wrong. Please try again in a moment.")), message)
    inbox.mark(
        event_id,
        status=inbox.PROCESSED,
        attempts=1,
        processed_at=utcnow(),
        outcome=(getattr(reply, "content", None) or type(reply).__name__)[:255] if reply else None,
        response=rendered.encode() if rendered else None,
    )
    return rendered


def _over_the_limit(message: Any, stored: StoredAs) -> str | None:
    """Store a new message as rate-limited (never processed) and answer "success"; a retry of a
    stored message gets what it got the first time."""
    event_id = _store(stored, inbox.store_event)  # in the session: committed with the mark below
    if event_id is not None:
        inbox.mark(event_id, status=inbox.PROCESSED, processed_at=utcnow(), outcome=RATE_LIMITED)
        log.warning("wechat sender over the limit: %s not processed", stored.key)
        return None
    if is_deferred(message):
        return _acknowledge_retry(message, stored)
    previous = inbox.stored_response("wechat", stored.key)
    return previous.decode() if previous else None


def _acknowledge_retry(message: Any, stored: StoredAs) -> str | None:
    if inbox.stored_outcome("wechat", stored.key) == RATE_LIMITED:
        return None
    return protocol.render(acknowledgement(message), message, at=message.time)


@dataclass(frozen=True)
class StoredAs:
    """How a callback message goes into the inbox."""

    key: str  # WeChat's dedupe key (protocol.dedupe_key)
    kind: str
    raw_xml: bytes
    occurred_at: dt.datetime
    signed_nonce: str


def _created_at(message: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(message._data["CreateTime"]), dt.UTC)


def _store(stored: StoredAs, store: Callable[..., int | None]) -> int | None:
    try:
        return store(
            source="wechat",
            external_id=stored.key,
            type=stored.kind,
            body=stored.raw_xml,
            occurred_at=stored.occurred_at,
            signed_nonce=stored.signed_nonce,
        )
    except inbox.ReplayedNonce:
        raise protocol.CallbackRejected(details={"reason": "replayed_nonce"}) from None


def _store_deferred(message: Any, stored: StoredAs) -> str | None:
    """The hot path of a launch-day QR scan: one autocommitted INSERT, a nudge to the drain, and
    the acknowledgement. The acknowledgement depends on the message alone, so a retry is answered
    by rendering it again rather than by storing it."""
    if _store(stored, inbox.store_event_at_once) is None:
        return _acknowledge_retry(message, stored)  # one lookup, for retries only
    drain.nudge("wechat")  # the event stays "received" until a drain processes it
    # Stamped with the message's own time, so every retry gets the same bytes.
    return protocol.render(acknowledgement(message), message, at=message.time)


def is_deferred(message: Any) -> bool:
    """Enrollment or money: a known QR scene, or a text that is a running campaign's password."""
    if message.type == "event":
        scene = message._data.get("EventKey") or ""
        scene = scene.removeprefix("qrscene_")
        return message.event in ("subscribe_scan", "scan") and scene.startswith(scenes.PREFIXES)
    if message.type == "text":
        content = message.content or ""
        return conversation.intent_of(content) is None and redpackets.campaign_by_password(content) is not None
    return False


def acknowledgement(message: Any) -> Reply:
    if message.type == "text" or (message._data.get("EventKey") or "").removeprefix("qrscene_").startswith(
        scenes.CAMPAIGN
    ):
        return Text(_("Checking your red packet, one moment please…"))
    return Text(_("Welcome! We are setting up your membership and will message you in a moment."))


def _kind(message: Any) -> str:
    return f"event.{message.event}" if message.type == "event" else f"message.{message.type}"


def identity_for(message: Any, at: dt.datetime) -> WechatIdentity:
    """The sender's identity, locked for the transaction (``route`` asks for it again at no cost);
    a newcomer who subscribes is created following."""
    subscribed = message.type == "event" and message.event in ("subscribe", "subscribe_scan")
    return identities.get_or_create(
        current_settings().WECHAT_APP_ID, message.source, following_since=at if subscribed else None
    )


def _member(identity: WechatIdentity) -> Member | None:
    member = identities.member_of(identity)
    if member is not None:
        use_member_locale(member.locale)
    return member


def route(message: Any, at: dt.datetime) -> Reply | None:
    if message._data.get("Event") == "subscribe_msg_sent_event":  # wechatpy knows no such event
        for msgid, status in subscribe_reports(message._data):
            notify.record_delivery(msgid, status)
        return None
    if message.type == "event":
        return _event(message, at)
    identity = identity_for(message, at)
    member = _member(identity)
    if message.type == "text":
        if member is not None:
            identities.record_message(identity, at)
        return _text(message.content or "", identity, member, at)
    if message.type == "location":
        point = _coordinates(message.location_x, message.location_y)
        if point is None:
            return conversation.help_reply()
        _keep_location(identity, member, point, at)
        return conversation.nearest_dealer_reply(*point)
    return conversation.help_reply()


def subscribe_reports(data: dict[str, Any]) -> list[tuple[int, str]]:
    """(MsgID, "success" or WeChat's ErrorStatus, e.g. "failed:user refuse to accept the msg") for
    each entry of a subscribe-message send report."""
    entries = (data.get("SubscribeMsgSentEvent") or {}).get("List") or []
    reports = []
    for entry in entries if isinstance(entries, list) else [entries]:
        msgid = str((entry or {}).get("MsgID") or "").strip()
        if not msgid.isdigit() or len(msgid) > 19:
            continue
        ok = str(entry.get("ErrorCode") or "").strip() == "0"
        status = str(entry.get("ErrorStatus") or "") or f"failed:{entry.get('ErrorCode')}"
        reports.append((int(msgid), "success" if ok else status))
    return reports


def _keep_location(
    identity: WechatIdentity, member: Member | None, point: tuple[float, float], at: dt.datetime
) -> None:
    """A location is personal data: kept only for a member who accepted the current policy. Anyone
    else still gets the nearest dealers, computed from the message and forgotten."""
    if member is not None and not registration.needs_consent(member):
        identities.record_location(identity, *point, at)


def _coordinates(latitude: Any, longitude: Any) -> tuple[float, float] | None:
    """WeChat sends coordinates as text; anything that is not a place on Earth is ignored."""
    try:
        lat, lng = float(latitude), float(longitude)
    except (TypeError, ValueError):
        return None
    return (lat, lng) if -90 <= lat <= 90 and -180 <= lng <= 180 else None


def _text(content: str, identity: WechatIdentity, member: Member | None, at: dt.datetime) -> Reply:
    choice = conversation.marketing_choice_of(content)
    if choice is not None:
        if member is not None:
            preferences.set_opted_out(member.id, {"marketing": choice == "stop"}, via="chat")
        return conversation.marketing_choice_reply(choice, member)
    intent = conversation.intent_of(content)
    if intent:
        return conversation.answer(intent, member)
    campaign = redpackets.campaign_by_password(content, at)
    if campaign is not None:
        return scenes.red_packet_reply(signup.sign_up(campaign.id, identity, at, via="password", channel="red_packet"))
    return conversation.help_reply()


def _event(message: Any, at: dt.datetime) -> Reply | None:  # noqa: PLR0911 - one answer per event type
    event = message.event
    if event == "templatesendjobfinish":
        notify.record_delivery(int(message.id), message.status)
        return None
    identity = identity_for(message, at)
    if event in ("subscribe", "subscribe_scan"):
        identities.follow(identity, at)
    if event in ("subscribe", "subscribe_scan", "scan"):
        identities.learn_unionid_later(identity)
    if event == "unsubscribe":
        identities.unfollow(identity, at)
        return None
    if event in ("subscribe_scan", "scan"):
        reply = scenes.handle_scene(message.scene_id or "", identity, at)
        if reply is not None:
            return reply
    member = _member(identity)
    if event in ("subscribe", "subscribe_scan", "scan"):
        return conversation.greeting_for_follower(member)
    if event == "click":
        intent = conversation.MENU_KEYS.get(message.key or "")
        return conversation.answer(intent, member) if intent else conversation.help_reply()
    if event == "location":
        point = _coordinates(message.latitude, message.longitude)
        if point is not None:
            _keep_location(identity, member, point, at)
        return None  # reported on every chat entry: kept for a consented member, not answered
    if event == "location_select":
        point = _coordinates(message.location_info.get("Location_X"), message.location_info.get("Location_Y"))
        return conversation.nearest_dealer_reply(*point) if point else conversation.help_reply()
    return None  # VIEW and anything else: nothing to say
