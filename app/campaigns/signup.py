"""Joining through a red-packet campaign: scanning its QR code or sending its password (口令).

A newcomer becomes a member (with the welcome gift) and everyone eligible gets one packet while
the budget lasts; the payout runs as a job after the commit. The WeChat channel renders the
result into a reply.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.campaigns import redpackets
from app.campaigns.models import RedPacketGrant
from app.campaigns.payouts import pay_out
from app.config import current_settings
from app.members import identities
from app.members.models import Member, WechatIdentity
from app.members.qr_enrollment import enroll_newcomer


@dataclass(frozen=True)
class CampaignSignUp:
    """``invalid_code``, or a red-packet outcome (``granted``, ``already_granted``, ``not_running``,
    ``channel_closed``, ``budget_exhausted``, ``daily_cap_reached``)."""

    outcome: str
    member: Member | None = None
    grant: RedPacketGrant | None = None
    welcome_points: int = 0


def enroll_from_campaign(code: str, identity: WechatIdentity, at: dt.datetime) -> CampaignSignUp:
    """Scanning a campaign's QR code."""
    campaign = redpackets.campaign_by_code(code)
    if campaign is None:
        return CampaignSignUp("invalid_code")
    return sign_up(campaign.id, identity, at, via="qr", channel="campaign_qr")


def sign_up(campaign_id: int, identity: WechatIdentity, at: dt.datetime, *, via: str, channel: str) -> CampaignSignUp:
    """Join (if new) and ask for a packet; a granted packet is paid by a job after the commit."""
    member = identities.member_of(identity)
    welcome_points = 0
    if member is None:
        member, welcome_points = enroll_newcomer(identity, channel=channel, at=at)
    result = redpackets.sign_up(
        campaign_id, member, identity.openid, via=via, mch_id=current_settings().WECHAT_PAY_MCH_ID
    )
    if result.outcome == "granted" and result.grant is not None:
        pay_out.after_commit(result.grant.id, job_id=f"red-packet-{result.grant.id}")
    return CampaignSignUp(result.outcome, member, result.grant, welcome_points)
