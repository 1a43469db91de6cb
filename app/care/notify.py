"""Telling members about changes: one Notification row per message, sent by a job after commit.

Kinds today: ``tier_upgrade`` (at once, SPEC §4) and ``tier_dropped`` (after a review). The
channel is the service account's template message; the member must follow the account (WeChat
43004 otherwise) and the template id is configured per kind (program setting
``wechat.template_ids``). ``TEMPLATESENDJOBFINISH`` callbacks record the delivery result.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa

from app import gateways
from app.care.models import Notification
from app.config import current_settings
from app.core import tunables
from app.core.clock import to_business, utcnow
from app.core.db import db, insert_if_absent
from app.core.i18n import _, in_locale
from app.jobs import job
from app.members import identities, services
from app.members.models import Member
from app.tiers.display import tier_highlights, tier_name

log = logging.getLogger(__name__)

TEMPLATE_IDS = tunables.define(
    "wechat.template_ids",
    {"tier_upgrade": "tier-upgrade-template", "tier_dropped": "tier-dropped-template"},
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


def queue(member_id: int, kind: str, *, period: str, payload: dict) -> int | None:
    """Queue one notification per (member, kind, period); the send runs after the commit. A member
    who has not consented to service notifications (or withdrew) gets a ``skipped`` row, no send."""
    allowed = _allows_service_notifications(member_id)
    notification_id = insert_if_absent(
        Notification,
        {
            "member_id": member_id,
            "kind": kind,
            "channel": "official_template",
            "status": "queued" if allowed else "skipped",
            "error": None if allowed else "no consent to service notifications",
            "dedupe_key": f"{kind}:{member_id}:{period}",
            "payload": payload,
            "attempts": 0,
            "created_at": utcnow(),
        },
        conflict_columns=("dedupe_key",),
    )
    if notification_id is not None and allowed:
        send_notification.after_commit(notification_id, job_id=f"notification-{notification_id}")
    return notification_id


def _template_data(notification: Notification) -> dict:
    payload = notification.payload
    if notification.kind == "tier_upgrade":
        return {
            "first": {"value": _("Congratulations, you have been upgraded!")},
            "keyword1": {"value": tier_name(payload["to_tier"])},
            "keyword2": {"value": to_business(notification.created_at).date().isoformat()},
            "remark": {"value": "、".join(tier_highlights(payload["to_tier"]))},
        }
    return {
        "first": {"value": _("Your membership tier has changed.")},
        "keyword1": {"value": tier_name(payload["to_tier"])},
        "keyword2": {"value": to_business(notification.created_at).date().isoformat()},
        "remark": {"value": _("One purchase, service visit, insurance renewal or successful referral earns it back.")},
    }


def queue_chat_reply(openid: str, member_id: int | None, reply: dict, *, for_event: int) -> int | None:
    """A conversation answer that comes later (customer-service message, allowed for 48 hours after the
    member wrote or scanned): one per inbound event."""
    notification_id = insert_if_absent(
        Notification,
        {
            "member_id": member_id,
            "kind": "chat_reply",
            "channel": "official_custom",
            "status": "queued",
            "dedupe_key": f"chat_reply:{for_event}",
            "payload": reply,
            "openid": openid,
            "attempts": 0,
            "created_at": utcnow(),
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


@job("notifications", retry=(30, 120, 600))
def send_notification(notification_id: int) -> str:
    notification = db.session.get(Notification, notification_id, with_for_update=True)
    if notification is None or notification.status != "queued":
        return "done"
    notification.attempts += 1
    if notification.channel == "official_custom":
        try:
            _send_custom(notification)
        except gateways.GatewayError as exc:
            notification.error = f"{exc.code}: {exc.message}"[:255]
            db.session.commit()
            raise
        notification.status, notification.sent_at = "sent", utcnow()
        return notification.status
    openid = identities.official_openid(notification.member_id, current_settings().WECHAT_APP_ID)
    template_id = TEMPLATE_IDS.value().get(notification.kind)
    if openid is None or not template_id:
        notification.status = "skipped"
        notification.error = "member does not follow the account" if openid is None else "no template configured"
        return notification.status
    member = db.session.get(Member, notification.member_id)
    with in_locale(member.locale if member else None):
        data = _template_data(notification)
    try:
        msgid = gateways.official_account().send_template(openid, template_id, data)
    except gateways.Refused as exc:
        if exc.code == gateways.NOT_FOLLOWING:
            notification.status, notification.error = "skipped", f"{exc.code}: {exc.message}"
            return notification.status
        notification.error = f"{exc.code}: {exc.message}"[:255]
        db.session.commit()  # keep the attempt and error; RQ retries
        raise
    except gateways.Unavailable as exc:
        notification.error = f"unavailable: {exc}"[:255]
        db.session.commit()
        raise
    notification.status, notification.openid, notification.sent_at = "sent", openid, utcnow()
    notification.wechat_msgid = msgid or None
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
