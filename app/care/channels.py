"""Channels in order, through the gateways: mini-app subscribe message, service-account template
message, SMS. The order per kind is a program setting (``care.channels``), and so are each
channel's template ids and field names (``wechat.template_ids``, ``care.subscribe_templates``,
``care.sms_templates``): operators change them in the WeChat console and here, without a deploy.

A channel the member cannot be reached on (no mini-app grant, not following, no phone, nothing
configured) is passed over, and so is one WeChat refuses for that reason (43101 no grant, 43004
not following). Any other failure ends the try (``Outcome.error``): the dispatcher retries the
message later with backoff. Token rejections (40001/42001) were already retried once by the client
after a refresh.

Three phases, so that a dispatcher can have several messages in flight: ``route`` (in its session,
from what was loaded for the batch: ``reach_of``), ``call`` (partners only, in a worker thread),
``record`` (the outcome on the row, in its session again).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from app import gateways
from app.care import rendering, subscriptions
from app.care.models import Notification, SubscribeGrant
from app.config import current_settings
from app.core import tunables
from app.core.clock import utcnow
from app.core.db import db
from app.members.models import Member, WechatIdentity

MINIAPP_SUBSCRIBE, OFFICIAL_TEMPLATE, SMS = "miniapp_subscribe", "official_template", "sms"
#: A chat reply (customer-service message): to the openid on the row, not a member's channels.
OFFICIAL_CUSTOM = "official_custom"
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


def order_for(kind: str) -> list[str]:
    configured = CHANNELS.value()
    return [c for c in configured.get(kind, configured.get("*", [])) if c in ALL]


@dataclass
class Reach:
    """Where a batch's members can be reached, loaded in one query: mini-app openids (for this
    mini-app) and service-account openids of followers."""

    miniapp: dict[int, str] = field(default_factory=dict)
    official: dict[int, str] = field(default_factory=dict)


def reach_of(member_ids: Collection[int]) -> Reach:
    settings, reach = current_settings(), Reach()
    rows = db.session.execute(
        sa.select(WechatIdentity.member_id, WechatIdentity.app_kind, WechatIdentity.openid).where(
            WechatIdentity.member_id.in_(sorted(set(member_ids))),
            sa.or_(
                sa.and_(WechatIdentity.app_kind == "miniapp", WechatIdentity.app_id == settings.MINIAPP_APP_ID),
                sa.and_(WechatIdentity.app_id == settings.WECHAT_APP_ID, WechatIdentity.following.is_(True)),
            ),
        )
    )
    for member_id, app_kind, openid in rows:
        (reach.miniapp if app_kind == "miniapp" else reach.official)[member_id] = openid
    return reach


@dataclass
class Step:
    """One channel to try for a message: what to call it with, or why it is passed over unasked."""

    channel: str
    passed_over: str | None = None
    to: str = ""  # openid or phone number
    template: str = ""  # template id, or the SMS template code
    fields: dict[str, Any] = field(default_factory=dict)
    page: str | None = None


@dataclass
class Route:
    """A message's channels in order, prepared in the dispatcher's session; ``call`` needs none."""

    notification_id: int
    member_id: int | None
    steps: list[Step]
    #: The subscribe grant taken for this message (``take_grant``), given back unless it was used.
    grant: str | None = None


@dataclass
class Outcome:
    channel: str | None = None
    to: str | None = None
    msgid: int | None = None  # WeChat's msgid
    message_id: str | None = None  # the SMS provider's id (Aliyun BizId)
    passed_over: list[str] = field(default_factory=list)
    #: WeChat said the member has no subscribe grant left (43101): ours were out of step.
    no_grant: bool = False
    #: A failure to retry later (not a "not on this channel" refusal).
    error: gateways.GatewayError | None = None


def route(notification: Notification, data: rendering.TemplateData | None, reach: Reach) -> Route:
    """The channels to try for ``notification``, each checked against what we know of the member."""
    if notification.channel == OFFICIAL_CUSTOM:
        step = Step(OFFICIAL_CUSTOM, to=notification.openid or "", fields=notification.payload)
        return Route(notification.id, notification.member_id, [step])
    assert data is not None
    member_id = notification.member_id
    steps = [_STEPS[channel](notification, data, reach, member_id) for channel in order_for(notification.kind)]
    return Route(notification.id, member_id, steps)


def _subscribe_step(notification: Notification, data: rendering.TemplateData, reach: Reach, member_id: Any) -> Step:
    template = SUBSCRIBE_TEMPLATES.value().get(notification.kind)
    if not template:
        return Step(MINIAPP_SUBSCRIBE, "no template configured")
    openid = reach.miniapp.get(member_id)
    if openid is None:
        return Step(MINIAPP_SUBSCRIBE, "no mini-app account")
    fields = rendering.subscribe_fields(data, template["fields"])
    page = template.get("page")
    return Step(MINIAPP_SUBSCRIBE, to=openid, template=template["template_id"], fields=fields, page=page)


def _template_step(notification: Notification, data: rendering.TemplateData, reach: Reach, member_id: Any) -> Step:
    template_id = TEMPLATE_IDS.value().get(notification.kind)
    if not template_id:
        return Step(OFFICIAL_TEMPLATE, "no template configured")
    openid = reach.official.get(member_id)
    if openid is None:
        return Step(OFFICIAL_TEMPLATE, "member does not follow the account")
    return Step(OFFICIAL_TEMPLATE, to=openid, template=template_id, fields=data)


def _sms_step(notification: Notification, data: rendering.TemplateData, reach: Reach, member_id: Any) -> Step:
    template = SMS_TEMPLATES.value().get(notification.kind)
    if gateways.sms() is None:
        return Step(SMS, "SMS is switched off")
    if not template:
        return Step(SMS, "no template configured")
    member = db.session.get(Member, member_id)  # loaded with the batch
    if member is None or not member.phone:
        return Step(SMS, "no phone number")
    params = rendering.sms_params(data, template["params"])
    return Step(SMS, to=member.phone, template=template["template_code"], fields=params)


_STEPS = {MINIAPP_SUBSCRIBE: _subscribe_step, OFFICIAL_TEMPLATE: _template_step, SMS: _sms_step}


def take_grant(planned: Route) -> None:
    """Before the call, in the transaction that records the attempt: one grant = one send, taken
    atomically; without one, the subscribe step is passed over."""
    for step in planned.steps:
        if step.channel == MINIAPP_SUBSCRIBE and step.passed_over is None:
            if subscriptions.use_grant(planned.member_id, step.template):  # type: ignore[arg-type]
                planned.grant = step.template
            else:
                step.passed_over = "no unused grant"


def call(planned: Route, partners: gateways.Gateways) -> Outcome:
    """Try the steps in order until one reaches the member; partners only, no database (a
    dispatcher runs several at once). 43101 and 43004 fall through to the next channel."""
    outcome = Outcome()
    for step in planned.steps:
        if step.passed_over is not None:
            outcome.passed_over.append(f"{step.channel}: {step.passed_over}")
            continue
        try:
            sent = _CALLS[step.channel](step, partners, planned.notification_id)
        except gateways.Refused as exc:
            if exc.code not in FALL_THROUGH or step.channel == OFFICIAL_CUSTOM:
                outcome.error = exc
                return outcome
            outcome.no_grant = outcome.no_grant or exc.code == gateways.NO_SUBSCRIPTION_GRANT
            outcome.passed_over.append(f"{step.channel}: {f'{exc.code} {exc.message}'.strip()}")
            continue
        except gateways.GatewayError as exc:
            outcome.error = exc
            return outcome
        outcome.channel, outcome.to = step.channel, step.to
        if step.channel == SMS:
            outcome.message_id = str(sent or "") or None
        else:
            outcome.msgid = int(sent or 0) or None
        return outcome
    return outcome


def _call_subscribe(step: Step, partners: gateways.Gateways, notification_id: int) -> int:
    return partners.mini_app.send_subscribe(step.to, step.template, step.fields, page=step.page)


def _call_template(step: Step, partners: gateways.Gateways, notification_id: int) -> int:
    return partners.official_account.send_template(step.to, step.template, step.fields)


def _call_sms(step: Step, partners: gateways.Gateways, notification_id: int) -> str:
    assert partners.sms is not None
    return partners.sms.send(step.to, step.template, step.fields, out_id=str(notification_id))


def _call_custom(step: Step, partners: gateways.Gateways, notification_id: int) -> None:
    if step.fields["type"] == "text":
        partners.official_account.send_text(step.to, step.fields["content"])
    else:
        partners.official_account.send_articles(step.to, step.fields["articles"][:1])


_CALLS: dict[str, Callable[[Step, gateways.Gateways, int], Any]] = {
    OFFICIAL_CUSTOM: _call_custom,
    MINIAPP_SUBSCRIBE: _call_subscribe,
    OFFICIAL_TEMPLATE: _call_template,
    SMS: _call_sms,
}


def record(notification: Notification, planned: Route, outcome: Outcome) -> None:
    """The channel's side of the outcome on the row (the caller handles errors and commits): the
    grant given back unless the subscribe message went out, forgotten after a 43101."""
    if planned.grant is not None and outcome.channel != MINIAPP_SUBSCRIBE:
        subscriptions.give_back(planned.member_id, planned.grant)  # type: ignore[arg-type]
    if outcome.no_grant:
        for step in planned.steps:
            if step.channel == MINIAPP_SUBSCRIBE and step.template:
                subscriptions.forget_grants(planned.member_id, step.template)  # type: ignore[arg-type]
    if outcome.channel is None:
        return
    notification.status, notification.channel, notification.sent_at = "sent", outcome.channel, utcnow()
    notification.error = None
    if outcome.channel in (MINIAPP_SUBSCRIBE, OFFICIAL_TEMPLATE):
        notification.openid, notification.wechat_msgid = outcome.to, outcome.msgid
    elif outcome.channel == SMS:
        notification.sms_message_id = outcome.message_id


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
