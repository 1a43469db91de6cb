"""Telling members: one Notification row per message, planned, then sent once.

Kinds: ``tier_upgrade`` (at once, SPEC §4), ``tier_dropped`` (after a review), chat replies, and
the reminders the planners write (``care.planning``). Sent on the first channel that reaches the
member (``care.channels``: mini-app subscribe message, template message, SMS), only with the consent
the kind's category needs and not to a member who opted out of it (``care.preferences``), marketing
kinds within the frequency caps (``care.caps``). ``TEMPLATESENDJOBFINISH`` and subscribe-message
send events record the delivery result.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa

from app import gateways
from app.care import caps, channels, dispatch, preferences, rendering, rules
from app.care.models import Notification
from app.core import tunables
from app.core.clock import to_business, utcnow
from app.core.db import db, insert_if_absent
from app.core.i18n import in_locale, normalize_locale
from app.jobs import job
from app.members.models import Member

log = logging.getLogger(__name__)

TEMPLATE_IDS = channels.TEMPLATE_IDS
TEXTS = tunables.define(
    "care.texts",
    {},
    "Operators' wording per kind and locale, over the catalogs: {kind: {locale: {field: text}}}, e.g. "
    "{'anniversary': {'zh_CN': {'remark': '…'}}}; fields not given keep the catalog's text",
)


def tier_changed(member_id: int, from_tier: str | None, to_tier: str, reason: str, at: dt.datetime) -> None:
    kind = {"upgrade": "tier_upgrade", "review_drop": "tier_dropped"}.get(reason)
    if kind is None:
        return
    queue(
        member_id,
        kind,
        period=f"{to_tier}:{to_business(at).date()}",
        payload={"from_tier": from_tier, "to_tier": to_tier},
    )


def queue(member_id: int, kind: str, *, period: str, payload: dict, due_at: dt.datetime | None = None) -> int | None:
    """Plan one notification per (member, kind, period). Due now, it is sent by a job after the
    commit; due later (a reminder's day, or after quiet hours), by the dispatcher. A member without
    the consent the kind needs, or who opted out of its category, gets a ``skipped`` row, no send."""
    refusal = preferences.why_not_wanted(member_id, kind)
    now = utcnow()
    due_at = rules.outside_quiet_hours(kind, due_at or now)
    notification_id = insert_if_absent(
        Notification,
        {
            "member_id": member_id,
            "kind": kind,
            "channel": (channels.order_for(kind) or [channels.OFFICIAL_TEMPLATE])[0],
            "status": "planned" if refusal is None else "skipped",
            "error": refusal,
            "dedupe_key": f"{kind}:{member_id}:{period}",
            "period": period,
            "payload": payload,
            "attempts": 0,
            "created_at": now,
            "due_at": due_at,
        },
        conflict_columns=("dedupe_key",),
    )
    if notification_id is not None and refusal is None and due_at <= now:
        send_notification.after_commit(notification_id, job_id=f"notification-{notification_id}")
    return notification_id


def queue_chat_reply(openid: str, member_id: int | None, reply: dict, *, for_event: int) -> int | None:
    """A conversation answer that comes later (customer-service message, allowed for 48 hours after the
    member wrote or scanned): one per inbound event."""
    notification_id = insert_if_absent(
        Notification,
        {
            "member_id": member_id,
            "kind": "chat_reply",
            "channel": "official_custom",
            "status": "planned",
            "dedupe_key": f"chat_reply:{for_event}",
            "payload": reply,
            "openid": openid,
            "attempts": 0,
            "created_at": utcnow(),
            "due_at": utcnow(),
        },
        conflict_columns=("dedupe_key",),
    )
    if notification_id is not None:
        send_notification.after_commit(notification_id, job_id=f"notification-{notification_id}")
    return notification_id


def _send_custom(notification: Notification) -> None:
    payload = notification.payload
    if payload["type"] == "text":
        gateways.official_account().send_text(notification.openid, payload["content"])
    else:
        gateways.official_account().send_articles(notification.openid, payload["articles"][:1])


@job("notifications")
def send_notification(notification_id: int) -> str:
    """Send one notification now if it is still planned, due and not paused (the dispatcher sends the rest)."""
    claimed = dispatch.claim(notification_id)
    if claimed is None:
        return "not due"
    return deliver(*claimed)


def deliver(notification_id: int, claimed_at: dt.datetime | None = None) -> str:
    """Send a claimed (``sending``) notification and record the outcome.

    Before the call: the member's rules (consent, opt-out, marketing caps) and the rendering; a
    message with nothing left to say, or one the member does not want, is skipped, one over a cap is
    postponed. Then the attempt is committed, the channels are tried in order, and the outcome is
    committed: a failure goes back with a backoff until ``MAX_ATTEMPTS``, then fails with its reason."""
    notification = db.session.get(
        Notification, notification_id, with_for_update=True, populate_existing=True
    )  # claimed by a statement the session did not see
    if not _still_ours(notification, claimed_at):
        db.session.commit()
        return "done"
    assert notification is not None
    data = None if notification.channel == "official_custom" else _prepare(notification)
    if notification.status != "sending":  # skipped or postponed before any call
        db.session.commit()
        return notification.status
    dispatch.mark_attempt(notification)
    db.session.commit()  # the attempt is on record before the call (and the cap lock is released)
    try:
        outcome = _send(notification, data)
    except gateways.GatewayError as exc:
        dispatch.retry_later(notification, f"{exc.code or type(exc).__name__}: {exc.message or exc}")
        outcome = notification.status
    db.session.commit()
    return outcome


def _still_ours(notification: Notification | None, claimed_at: dt.datetime | None) -> bool:
    """Still claimed, not attempted yet, and by this claim (a swept and re-claimed row is not)."""
    return (
        notification is not None
        and notification.status == "sending"
        and notification.attempted_at is None
        and (claimed_at is None or notification.claimed_at == claimed_at)
    )


def _prepare(notification: Notification) -> rendering.TemplateData | None:
    """Check the member's rules and render; leaves the row ``sending`` only if it may go now."""
    refusal = preferences.why_not_wanted(notification.member_id, notification.kind)
    if refusal is not None:
        _skip(notification, refusal)
        return None
    now = utcnow()
    if (morning := rules.outside_quiet_hours(notification.kind, now)) != now:  # due before, reached late
        _hold(notification, morning, "postponed: quiet hours")
        return None
    if notification.kind not in rendering.RENDERERS:
        _skip(notification, f"no text for kind {notification.kind}")
        return None
    member = db.session.get(Member, notification.member_id)
    locale = normalize_locale(member.locale if member else None)
    with in_locale(locale):
        data = rendering.template_data(notification)
    overrides = TEXTS.value().get(notification.kind, {}).get(locale, {})
    if data is not None and overrides:
        data = {**data, **{field: {"value": str(text)} for field, text in overrides.items()}}
    if data is None:
        _skip(notification, "nothing to remind of any more")
        return None
    if rules.category_of(notification.kind) == "marketing":
        caps.lock_member(notification.member_id)  # type: ignore[arg-type]
        allowed_at = caps.next_allowed(notification, now)
        if allowed_at is None:
            return data
        if caps.too_late(notification, allowed_at):
            _skip(notification, "over the marketing frequency cap for too long")
        else:
            _hold(
                notification,
                rules.outside_quiet_hours(notification.kind, allowed_at),
                "postponed: marketing frequency cap",
            )
    return data


def _hold(notification: Notification, until: dt.datetime, reason: str) -> None:
    """Back to ``planned``, due ``until``; not an attempt."""
    notification.status, notification.claimed_at, notification.due_at = "planned", None, until
    notification.error = reason


def send_due(limit: int | None = None) -> int:
    """Claim due notifications in batches and send them until none is left (or ``limit``); returns
    how many were handled."""
    handled = 0
    while limit is None or handled < limit:
        batch = dispatch.claim_batch(None if limit is None else min(limit - handled, dispatch.BATCH_SIZE.value()))
        if not batch:
            break
        for notification_id, claimed_at in batch:
            try:
                deliver(notification_id, claimed_at)
            except Exception as exc:  # a bug or an outage must not strand the rest of the batch
                db.session.rollback()
                log.exception("notification %s could not be delivered", notification_id)
                _give_up(notification_id, claimed_at, f"internal error: {type(exc).__name__}")
        handled += len(batch)
    return handled


def _give_up(notification_id: int, claimed_at: dt.datetime, reason: str) -> None:
    """A row whose delivery raised: failed with the reason if never called, otherwise left for the
    sweeper (a call may have gone out). Best effort: with the database gone, the sweeper decides."""
    try:
        db.session.execute(
            sa.update(Notification)
            .where(
                Notification.id == notification_id,
                Notification.status == "sending",
                Notification.claimed_at == claimed_at,
                Notification.attempted_at.is_(None),
            )
            .values(status="failed", error=reason[:255], finished_at=utcnow())
        )
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("could not record the failure of notification %s", notification_id)


@job("notifications", timeout=600)
def send_due_notifications() -> int:
    """Every minute: send what is due (reminders at 09:00, messages held over quiet hours, retries)."""
    return send_due(limit=5_000)


def _skip(notification: Notification, reason: str) -> str:
    notification.status, notification.error, notification.finished_at = "skipped", reason[:255], utcnow()
    return notification.status


def _send(notification: Notification, data: rendering.TemplateData | None) -> str:
    if notification.channel == "official_custom":
        _send_custom(notification)
        notification.status, notification.sent_at = "sent", utcnow()
        return notification.status
    assert data is not None
    outcome = channels.send(notification, data)
    if outcome.channel is None:
        notification.channel = "none"  # counted apart in the delivery rates
        return _skip(notification, "no channel reaches the member: " + "; ".join(outcome.passed_over))
    notification.channel = outcome.channel
    return notification.status


def record_delivery(msgid: int, status: str) -> bool:
    """A delivery report for a message WeChat accepted: TEMPLATESENDJOBFINISH ('success',
    'failed:user block', 'failed: system failed') or a subscribe-message send event ('success' or
    'failed:<ErrorStatus>'). A report for a row already finished by an earlier report changes nothing
    but the status text."""
    notification = db.session.scalar(sa.select(Notification).where(Notification.wechat_msgid == msgid))
    if notification is None:
        log.info("delivery report for unknown template msgid %s", msgid)
        return False
    notification.delivery_status = status[:32]
    notification.status = "delivered" if status == "success" else "failed"
    notification.finished_at = utcnow()
    return True
