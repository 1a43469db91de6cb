"""What scanning one of our QR codes answers (subscribe with ``qrscene_…`` or SCAN).

Scenes (≤ 64 characters): ``order:<token>`` (the buyer's order code), ``adv:<staff code>`` (an
advisor's personal code), ``camp:<campaign code>`` (a red-packet campaign). Each is one call into
the domain (``members.qr_enrollment``, ``campaigns.signup``); this module only renders the result
in the member's language.
"""

from __future__ import annotations

import datetime as dt

from app.campaigns import signup
from app.core.i18n import _, use_member_locale
from app.members import qr_enrollment
from app.members.models import WechatIdentity
from app.wechat.conversation import welcome_reply
from app.wechat.replies import Reply, Text

ORDER, ADVISOR, CAMPAIGN = "order:", "adv:", "camp:"
PREFIXES = (ORDER, ADVISOR, CAMPAIGN)


def handle_scene(scene: str, identity: WechatIdentity, at: dt.datetime) -> Reply | None:
    if scene.startswith(ORDER):
        return order_reply(qr_enrollment.activate_by_order_token(scene[len(ORDER) :], identity, at))
    if scene.startswith(ADVISOR):
        return advisor_reply(qr_enrollment.enroll_from_advisor_qr(scene[len(ADVISOR) :], identity, at))
    if scene.startswith(CAMPAIGN):
        return red_packet_reply(signup.enroll_from_campaign(scene[len(CAMPAIGN) :], identity, at))
    return None


def order_reply(scan: qr_enrollment.OrderScan) -> Reply:
    if scan.member is not None:
        use_member_locale(scan.member.locale)
    if scan.outcome == "expired":
        return Text(_("This code has expired. Please ask your advisor for a new one."))
    if scan.outcome == "used":
        return Text(_("This code has already been used. Please ask your advisor for a new one."))
    if scan.outcome == "identity_taken":
        return Text(_("This WeChat account is already linked to another membership. Please contact customer service."))
    assert scan.member is not None
    return welcome_reply(scan.member, credited=scan.credited_points)


def advisor_reply(scan: qr_enrollment.AdvisorScan) -> Reply:
    if scan.outcome == "invalid_code" or scan.staff is None or scan.dealer is None or scan.member is None:
        return Text(_("This code is no longer valid."))
    use_member_locale(scan.member.locale)
    names = {"advisor": scan.staff.name, "dealer": scan.dealer.name}
    if scan.outcome == "already_member":
        return Text(_("You are already a member. %(advisor)s of %(dealer)s is happy to help you.", **names))
    reply = welcome_reply(scan.member, credited=scan.credited_points)
    intro = _("%(advisor)s of %(dealer)s is your advisor.", **names)
    return Text(reply.content + "\n" + intro) if isinstance(reply, Text) else reply


def red_packet_reply(result: signup.CampaignSignUp) -> Reply:
    if result.outcome == "invalid_code" or result.member is None:
        return Text(_("This code is no longer valid."))
    use_member_locale(result.member.locale)
    if result.outcome == "granted" and result.grant is not None:
        amount = f"{result.grant.amount_fen / 100:.2f}"
        text = _("Congratulations! A red packet of ¥%(amount)s is on its way.", amount=amount)
    else:
        text = {
            "already_granted": _("You have already received this red packet."),
            "not_running": _("This campaign is not running right now."),
            "channel_closed": _("This campaign is not running right now."),
            "budget_exhausted": _("All red packets have been handed out. Thank you for joining!"),
            "daily_cap_reached": _("Today's red packets are gone. Please try again tomorrow."),
        }[result.outcome]
    if result.welcome_points:
        welcome = _("Welcome to the club! %(points)s welcome points have been credited.", points=result.welcome_points)
        text = welcome + "\n" + text
    return Text(text)
