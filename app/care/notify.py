"""Telling members: one Notification row per message, planned, then sent once.

Kinds: ``tier_upgrade`` (at once, SPEC §4), ``tier_dropped`` (after a review), chat replies, and
the reminders the planners write (``care.planning``). The channel is the service account's
template message; the member must follow the account (WeChat 43004 otherwise) and the template id
is configured per kind (program setting ``wechat.template_ids``). ``TEMPLATESENDJOBFINISH``
callbacks record the delivery result.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa

from app import gateways
from app.care import dispatch, rendering, rules
from app.care.models import Notification
from app.config import current_settings
from app.core import tunables
from app.core.clock import to_business, utcnow
from app.core.db import db, insert_if_absent
from app.core.i18n import in_locale
from app.jobs import job
from app.members import identities, services
from app.members.models import Member

log = logging.getLogger(__name__)

TEMPLATE_IDS = tunables.define(
    "wechat.template_ids",
    {
        "tier_upgrade": "tier-upgrade-template",
        "tier_dropped": "tier-dropped-template",
        "tier_at_risk": "tier-at-risk-template",
        "points_expiring": "points-expiring-template",
        "anniversary": "anniversary-template",
        "welcome": "welcome-template",
        "birthday": "birthday-template",
        "maintenance_due": "maintenance-due-template",
        "insurance_renewal": "insurance-renewal-template",
        "booking_confirmed": "booking-confirmed-template",
        "booking_reminder": "booking-reminder-template",
        "rating_request": "rating-request-template",
        "win_back": "win-back-template",
    },
    "Service-account template message ids per notification kind (from the WeChat admin console)",
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


def _allows_service_notifications(member_id: int) -> bool:
    member = db.session.get(Member, member_id)
    return member is not None and services.consent_state(member).purposes.get("service_notifications") is True


def queue(member_id: int, kind: str, *, period: str, payload: dict, due_at: dt.datetime | None = None) -> int | None:
    """Plan one notification per (member, kind, period). Due now, it is sent by a job after the
    commit; due later (a reminder's day, or after quiet hours), by the dispatcher. A member who has
    not consented to service notifications (or withdrew) gets a ``skipped`` row, no send."""
    allowed = _allows_service_notifications(member_id)
    now = utcnow()
    due_at = rules.outside_quiet_hours(kind, due_at or now)
    notification_id = insert_if_absent(
        Notification,
        {
            "member_id": member_id,
            "kind": kind,
            "channel": "official_template",
            "status": "planned" if allowed else "skipped",
            "error": None if allowed else "no consent to service notifications",
            "dedupe_key": f"{kind}:{member_id}:{period}",
            "period": period,
            "payload": payload,
            "attempts": 0,
            "created_at": now,
            "due_at": due_at,
        },
        conflict_columns=("dedupe_key",),
    )
    if notification_id is not None and allowed and due_at <= now:
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
    """Send one notification now if it is still planned and due (the dispatcher sends the rest)."""
    if not dispatch.claim(notification_id):
        return "not due"
    return deliver(notification_id)


def deliver(notification_id: int) -> str:
    """Send a claimed (``sending``) notification and record the outcome; commits once.

    The attempt was committed before this call (``dispatch.claim``). A refusal that will not change
    (not following, no template, no consent any more) skips the row; anything else puts it back
    with a backoff until ``MAX_ATTEMPTS``, then fails it with the reason kept."""
    notification = db.session.get(
        Notification, notification_id, with_for_update=True, populate_existing=True
    )  # claimed by a statement the session did not see
    if notification is None or notification.status != "sending":
        return "done"
    try:
        outcome = _send(notification)
    except gateways.GatewayError as exc:
        dispatch.retry_later(notification, f"{exc.code or type(exc).__name__}: {exc.message or exc}")
        outcome = notification.status
    db.session.commit()
    return outcome


def send_due(limit: int | None = None) -> int:
    """Send due notifications one by one until none is left (or ``limit``); returns how many."""
    handled = 0
    while limit is None or handled < limit:
        notification_id = dispatch.claim_next()
        if notification_id is None:
            break
        deliver(notification_id)
        handled += 1
    return handled


@job("notifications", timeout=600)
def send_due_notifications() -> int:
    """Every minute: send what is due (reminders at 09:00, messages held over quiet hours, retries)."""
    return send_due(limit=5_000)


def _skip(notification: Notification, reason: str) -> str:
    notification.status, notification.error, notification.finished_at = "skipped", reason[:255], utcnow()
    return notification.status


def _why_not_sent(member_id: int | None, openid: str | None, template_id: str | None) -> str | None:
    if member_id is None or not _allows_service_notifications(member_id):  # withdrawn since planned
        return "no consent to service notifications"
    if openid is None:
        return "member does not follow the account"
    if not template_id:
        return "no template configured"
    return None


def _send(notification: Notification) -> str:
    if notification.channel == "official_custom":
        _send_custom(notification)
        notification.status, notification.sent_at = "sent", utcnow()
        return notification.status
    openid = identities.official_openid(notification.member_id, current_settings().WECHAT_APP_ID)
    template_id = TEMPLATE_IDS.value().get(notification.kind)
    reason = _why_not_sent(notification.member_id, openid, template_id)
    if reason is not None:
        return _skip(notification, reason)
    member = db.session.get(Member, notification.member_id)
    with in_locale(member.locale if member else None):
        data = rendering.template_data(notification)
    if data is None:
        return _skip(notification, "nothing to remind of any more")
    try:
        msgid = gateways.official_account().send_template(openid, template_id, data)
    except gateways.Refused as exc:
        if exc.code == gateways.NOT_FOLLOWING:
            return _skip(notification, f"{exc.code}: {exc.message}")
        raise
    notification.status, notification.openid, notification.sent_at = "sent", openid, utcnow()
    notification.wechat_msgid = msgid or None
    notification.error = None
    return notification.status


def record_delivery(msgid: int, status: str) -> bool:
    """TEMPLATESENDJOBFINISH: 'success', 'failed:user block' or 'failed: system failed'."""
    notification = db.session.scalar(sa.select(Notification).where(Notification.wechat_msgid == msgid))
    if notification is None:
        log.info("delivery report for unknown template msgid %s", msgid)
        return False
    notification.delivery_status = status[:32]
    notification.status = "delivered" if status == "success" else "failed"
    notification.finished_at = utcnow()
    return True
