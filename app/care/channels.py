"""Channels in order, through the gateways: mini-app subscribe message, service-account template
message, SMS. The order per kind is a program setting (``care.channels``), and so are each
channel's template ids and field names (``wechat.template_ids``, ``care.subscribe_templates``,
``care.sms_templates``): operators change them in the WeChat console and here, without a deploy.

A channel the member cannot be reached on (no mini-app grant, not following, no phone, nothing
configured) is passed over, and so is one WeChat refuses for that reason (43101 no grant, 43004
not following). Any other failure is raised: the dispatcher retries the message later with backoff.
Token rejections (40001/42001) were already retried once by the client after a refresh.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa

from app import gateways
from app.care import rendering, subscriptions
from app.care.models import Notification, SubscribeGrant
from app.config import current_settings
from app.core import tunables
from app.core.clock import utcnow
from app.core.db import db
from app.members import identities
from app.members.models import Member, WechatIdentity

MINIAPP_SUBSCRIBE, OFFICIAL_TEMPLATE, SMS = "miniapp_subscribe", "official_template", "sms"
ALL = (MINIAPP_SUBSCRIBE, OFFICIAL_TEMPLATE, SMS)
#: WeChat's refusals that mean "not on this channel": try the next one.
FALL_THROUGH = {gateways.NO_SUBSCRIPTION_GRANT, gateways.NOT_FOLLOWING}

#: Every kind with a message template: the defaults of the three template settings below.
TEMPLATE_KINDS = (
    "tier_upgrade",
    "tier_dropped",
    "tier_at_risk",
    "points_expiring",
    "anniversary",
    "welcome",
    "birthday",
    "maintenance_due",
    "insurance_renewal",
    "booking_confirmed",
    "booking_reminder",
    "rating_request",
    "win_back",
    "referral_milestone",
    "referral_reward",
)
TEMPLATE_IDS = tunables.define(
    "wechat.template_ids",
    {kind: f"{kind.replace('_', '-')}-template" for kind in TEMPLATE_KINDS},
    "Service-account template message ids per notification kind (from the WeChat admin console)",
)
CHANNELS = tunables.define(
    "care.channels",
    {"*": [MINIAPP_SUBSCRIBE, OFFICIAL_TEMPLATE, SMS]},
    "Channels tried in order per notification kind ('*' for kinds not listed)",
)
SUBSCRIBE_TEMPLATES = tunables.define(
    "care.subscribe_templates",
    {
        kind: {
            "template_id": f"{kind.replace('_', '-')}-subscribe",
            "page": "pages/index/index",
            "fields": {"thing1": "first", "thing2": "keyword1", "time3": "keyword2"},
        }
        for kind in TEMPLATE_KINDS
    },
    "Mini-app subscribe-message templates per kind: template_id, page, and template field → rendered field",
)
SMS_TEMPLATES = tunables.define(
    "care.sms_templates",
    {
        kind: {
            "template_code": f"SMS_{kind.upper()}",
            "params": {"title": "first", "detail": "keyword1", "date": "keyword2"},
        }
        for kind in TEMPLATE_KINDS
    },
    "SMS templates per kind (approved at the provider): template_code and template parameter → rendered field",
)


@dataclass
class Outcome:
    channel: str | None = None
    message_id: str | None = None
    passed_over: list[str] = field(default_factory=list)


def order_for(kind: str) -> list[str]:
    configured = CHANNELS.value()
    return [c for c in configured.get(kind, configured.get("*", [])) if c in ALL]


def send(notification: Notification, data: rendering.TemplateData) -> Outcome:
    """Send on the first channel that reaches the member; ``Outcome.channel`` None if none did."""
    outcome = Outcome()
    for channel in order_for(notification.kind):
        reason = _SENDERS[channel](notification, data, outcome)
        if reason is None:
            outcome.channel = channel
            return outcome
        outcome.passed_over.append(f"{channel}: {reason}")
    return outcome


def _refused_for_channel(exc: gateways.Refused) -> str:
    if exc.code in FALL_THROUGH:
        return f"{exc.code} {exc.message}".strip()
    raise exc


def _miniapp_openid(member_id: int) -> str | None:
    return db.session.scalar(
        sa.select(WechatIdentity.openid).where(
            WechatIdentity.member_id == member_id,
            WechatIdentity.app_kind == "miniapp",
            WechatIdentity.app_id == current_settings().MINIAPP_APP_ID,
        )
    )


def _subscribe(notification: Notification, data: rendering.TemplateData, outcome: Outcome) -> str | None:
    template = SUBSCRIBE_TEMPLATES.value().get(notification.kind)
    if not template:
        return "no template configured"
    openid = _miniapp_openid(notification.member_id)  # type: ignore[arg-type]
    if openid is None:
        return "no mini-app account"
    try:
        # A failed call gives the grant back; had WeChat used it after all, its 43101 next time corrects us.
        with db.session.begin_nested():
            if not subscriptions.use_grant(notification.member_id, template["template_id"]):  # type: ignore[arg-type]
                return "no unused grant"
            msgid = gateways.mini_app().send_subscribe(
                openid,
                template["template_id"],
                rendering.subscribe_fields(data, template["fields"]),
                page=template.get("page"),
            )
    except gateways.Refused as exc:
        if exc.code == gateways.NO_SUBSCRIPTION_GRANT:  # WeChat knows of none: ours were out of step
            subscriptions.forget_grants(notification.member_id, template["template_id"])  # type: ignore[arg-type]
        return _refused_for_channel(exc)
    _sent(notification, openid, msgid)
    return None


def _template(notification: Notification, data: rendering.TemplateData, outcome: Outcome) -> str | None:
    template_id = TEMPLATE_IDS.value().get(notification.kind)
    if not template_id:
        return "no template configured"
    openid = identities.official_openid(notification.member_id, current_settings().WECHAT_APP_ID)  # type: ignore[arg-type]
    if openid is None:
        return "member does not follow the account"
    try:
        msgid = gateways.official_account().send_template(openid, template_id, data)
    except gateways.Refused as exc:
        return _refused_for_channel(exc)
    _sent(notification, openid, msgid)
    return None


def _sms(notification: Notification, data: rendering.TemplateData, outcome: Outcome) -> str | None:
    sms, template = gateways.sms(), SMS_TEMPLATES.value().get(notification.kind)
    if sms is None:
        return "SMS is switched off"
    if not template:
        return "no template configured"
    member = db.session.get(Member, notification.member_id)
    if member is None or not member.phone:
        return "no phone number"
    message_id = sms.send(
        member.phone, template["template_code"], rendering.sms_params(data, template["params"]),
        out_id=str(notification.id),
    )  # fmt: skip
    notification.status, notification.sent_at, notification.error = "sent", utcnow(), None
    outcome.message_id = message_id
    return None


def _sent(notification: Notification, openid: str, msgid: int | None) -> None:
    notification.status, notification.openid, notification.sent_at = "sent", openid, utcnow()
    notification.wechat_msgid = msgid or None
    notification.error = None


_SENDERS = {MINIAPP_SUBSCRIBE: _subscribe, OFFICIAL_TEMPLATE: _template, SMS: _sms}


def _reachable(channel: str, kind: str) -> sa.ColumnElement[bool]:
    """SQL: this channel could reach the row's member now (what ``send`` would check, in bulk)."""
    settings = current_settings()
    if channel == MINIAPP_SUBSCRIBE:
        template = SUBSCRIBE_TEMPLATES.value().get(kind)
        if not template:
            return sa.false()
        has_account = sa.exists().where(
            WechatIdentity.member_id == Notification.member_id,
            WechatIdentity.app_kind == "miniapp",
            WechatIdentity.app_id == settings.MINIAPP_APP_ID,
        )
        has_grant = sa.exists().where(
            SubscribeGrant.member_id == Notification.member_id,
            SubscribeGrant.template_id == template["template_id"],
            SubscribeGrant.available > 0,
        )
        return sa.and_(has_account, has_grant)
    if channel == OFFICIAL_TEMPLATE:
        if not TEMPLATE_IDS.value().get(kind):
            return sa.false()
        return sa.exists().where(
            WechatIdentity.member_id == Notification.member_id,
            WechatIdentity.app_id == settings.WECHAT_APP_ID,
            WechatIdentity.following.is_(True),
        )
    if gateways.sms() is None or not SMS_TEMPLATES.value().get(kind):
        return sa.false()
    return sa.exists().where(Member.id == Notification.member_id, Member.phone_index.is_not(None))


def likely_channels(kind: str, planned_since: dt.datetime) -> dict[str, int]:
    """How the planned rows of ``kind`` written since then would go out now, per channel ("none":
    no channel reaches the member). An estimate for dry runs: consent and caps are checked at send time."""
    order = order_for(kind)
    channel = sa.case(*((_reachable(name, kind), sa.literal(name)) for name in order), else_=sa.literal("none"))
    if not order:
        channel = sa.literal("none")
    per_row = (
        sa.select(channel.label("channel"))
        .where(Notification.kind == kind, Notification.status == "planned", Notification.created_at >= planned_since)
        .subquery()
    )
    rows = db.session.execute(sa.select(per_row.c.channel, sa.func.count()).group_by(per_row.c.channel))
    return {name: count for name, count in rows}
