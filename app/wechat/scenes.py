"""What scanning one of our QR codes does (subscribe with ``qrscene_…`` or SCAN).

Scenes (≤ 64 characters):

* ``order:<token>`` — the order enrollment code an advisor shows at delivery: binds this WeChat
  to the pre-enrolled buyer, activates them (purchase points and welcome gift credited) and
  welcomes them with their tier and benefits;
* ``adv:<staff code>`` — an advisor's personal code: a newcomer becomes a member attributed to the
  advisor and dealer (90-day protection period) and gets the welcome gift;
* ``camp:<campaign code>`` — a red-packet campaign: newcomers join, and everyone eligible gets
  one packet while the budget lasts.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.campaigns import redpackets
from app.config import current_settings
from app.core import audit
from app.core.db import db
from app.core.i18n import _, use_member_locale
from app.dealers.models import Dealer, Staff
from app.members import activation, identities, prospects, services
from app.members.models import EnrollmentToken, Member, WechatIdentity
from app.points import earning
from app.wechat.conversation import welcome_reply
from app.wechat.replies import Reply, Text

ORDER, ADVISOR, CAMPAIGN = "order:", "adv:", "camp:"
PREFIXES = (ORDER, ADVISOR, CAMPAIGN)


def handle_scene(scene: str, identity: WechatIdentity, at: dt.datetime) -> Reply | None:
    if scene.startswith(ORDER):
        return _order(scene[len(ORDER) :], identity, at)
    if scene.startswith(ADVISOR):
        return _advisor(scene[len(ADVISOR) :], identity, at)
    if scene.startswith(CAMPAIGN):
        return _campaign(scene[len(CAMPAIGN) :], identity, at)
    return None


def _member_of(identity: WechatIdentity) -> Member | None:
    return db.session.get(Member, identity.member_id) if identity.member_id else None


def _order(token_value: str, identity: WechatIdentity, at: dt.datetime) -> Reply:
    token = db.session.scalars(
        sa.select(EnrollmentToken).where(EnrollmentToken.token == token_value).with_for_update()
    ).one_or_none()
    if token is None or (token.used_at is None and token.expires_at <= at):
        return Text(_("This code has expired. Please ask your advisor for a new one."))
    if token.used_at is not None and identity.member_id != token.member_id:
        return Text(_("This code has already been used. Please ask your advisor for a new one."))
    member = db.session.get(Member, token.member_id)
    assert member is not None
    use_member_locale(member.locale)
    scanned_before = _member_of(identity)
    if scanned_before is not None and scanned_before.id != member.id and prospects.is_empty_prospect(scanned_before):
        prospects.absorb(scanned_before, into=member, at=at)  # an advisor-QR prospect who has now bought
        db.session.refresh(identity)
    if not identities.bind(identity, member):
        return Text(_("This WeChat account is already linked to another membership. Please contact customer service."))
    token.used_at = token.used_at or at
    result = activation.activate(member, at=at, actor=("member", member.id))
    audit.record(
        actor=("member", member.id),
        action="wechat.bound",
        subject=("member", member.id),
        details={"via": "order_qr", "openid": identity.openid},
    )
    return welcome_reply(member, credited=result.released_points + result.welcome_points)


def _new_member(
    identity: WechatIdentity, *, channel: str, at: dt.datetime, staff: Staff | None = None, dealer_id: int | None = None
) -> Member:
    """A member with no personal data yet (that comes with consent in the mini-app), bound to this openid."""
    member = services.create_member(
        channel=channel,
        status="active",
        enrolled_at=at,
        activated_at=at,
        enrolling_dealer_id=dealer_id if staff is None else staff.dealer_id,
        enrolling_staff_id=staff.id if staff else None,
        attribution_until=services.attribution_deadline(at) if staff else None,
    )
    identities.bind(identity, member)
    audit.record(
        actor=("member", member.id),
        action="member.enrolled",
        subject=("member", member.id),
        details={"channel": channel, "staff": staff.staff_code if staff else None},
    )
    return member


def _welcome_gift(member: Member, at: dt.datetime) -> int:
    awards = earning.award_event(
        member, "enrollment.welcome", {"channel": member.enrollment_channel}, ref=f"member-{member.id}", occurred_at=at
    )
    return sum(a.points for a in awards if a.currency == "reward" and a.new)


def _advisor(staff_code: str, identity: WechatIdentity, at: dt.datetime) -> Reply:
    staff = db.session.scalar(sa.select(Staff).where(Staff.staff_code == staff_code, Staff.active))
    if staff is None:
        return Text(_("This code is no longer valid."))
    dealer = db.session.get(Dealer, staff.dealer_id)
    assert dealer is not None
    member = _member_of(identity)
    if member is not None:
        use_member_locale(member.locale)
        return Text(
            _(
                "You are already a member. %(advisor)s of %(dealer)s is happy to help you.",
                advisor=staff.name,
                dealer=dealer.name,
            )
        )
    member = _new_member(identity, channel="advisor_qr", at=at, staff=staff)
    credited = _welcome_gift(member, at)
    reply = welcome_reply(member, credited=credited)
    intro = _("%(advisor)s of %(dealer)s is your advisor.", advisor=staff.name, dealer=dealer.name)
    return Text(reply.content + "\n" + intro) if isinstance(reply, Text) else reply


def _campaign(code: str, identity: WechatIdentity, at: dt.datetime) -> Reply:
    campaign = redpackets.campaign_by_code(code)
    if campaign is None:
        return Text(_("This code is no longer valid."))
    return red_packet_for(campaign.id, identity, at, via="qr", channel="campaign_qr")


def red_packet_for(campaign_id: int, identity: WechatIdentity, at: dt.datetime, *, via: str, channel: str) -> Reply:
    """Join (if new) and ask for a packet; the payout runs as a job after the commit."""
    from app.wechat.pay import pay_out

    member = _member_of(identity)
    welcome_points = 0
    if member is None:
        member = _new_member(identity, channel=channel, at=at)
        welcome_points = _welcome_gift(member, at)
    else:
        use_member_locale(member.locale)
    mch_id = current_settings().WECHAT_PAY_MCH_ID
    result = redpackets.sign_up(campaign_id, member, identity.openid, via=via, mch_id=mch_id)
    if result.outcome == "granted":
        pay_out.after_commit(result.grant.id, job_id=f"red-packet-{result.grant.id}")  # type: ignore[union-attr]
        amount = f"{result.grant.amount_fen / 100:.2f}"  # type: ignore[union-attr]
        text = _("Congratulations! A red packet of ¥%(amount)s is on its way.", amount=amount)
    else:
        text = {
            "already_granted": _("You have already received this red packet."),
            "not_running": _("This campaign is not running right now."),
            "channel_closed": _("This campaign is not running right now."),
            "budget_exhausted": _("All red packets have been handed out. Thank you for joining!"),
            "daily_cap_reached": _("Today's red packets are gone. Please try again tomorrow."),
        }[result.outcome]
    if welcome_points:
        text = (
            _("Welcome to the club! %(points)s welcome points have been credited.", points=welcome_points) + "\n" + text
        )
    return Text(text)
