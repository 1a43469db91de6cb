"""Milestones from DMS events: test drive (by the referee's phone) → order → delivery (by phone,
within the window) → reward; a cancelled order claws the rewards back.

Each function locks the referral row first, so resent or concurrent events for one referee are
applied one after the other and see what the previous one did.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.core import events
from app.core.clock import to_business
from app.core.db import db
from app.dealers.models import SalesLead
from app.members.models import Member
from app.members.services import phone_index
from app.referrals import rewards
from app.referrals.attribution import referral_of_referee
from app.referrals.models import Referral

_ORDER = ("lead", "test_drive", "order", "delivery")


def _referral_for_phone(phone: str) -> Referral | None:
    member_id = db.session.scalar(sa.select(Member.id).where(Member.phone_index == phone_index(phone)))
    return None if member_id is None else referral_of_referee(member_id, lock=True)


def _advance(referral: Referral, milestone: str, at: dt.datetime) -> bool:
    """Move forward (never back, never out of a cancellation); True when the milestone is new."""
    if referral.milestone == "cancelled" or _ORDER.index(milestone) <= _ORDER.index(referral.milestone):
        return False
    referral.milestone = milestone
    events.publish(
        events.ReferralMilestoneReached(
            referral.id, referral.referrer_member_id, referral.referee_member_id, milestone, at
        )
    )
    return True


def _before_attribution(referral: Referral, at: dt.datetime) -> bool:
    """DMS times are whole seconds on the dealer's calendar: compare business days, not instants."""
    return to_business(at).date() < to_business(referral.attributed_at).date()


def _lead_status(referral: Referral, status: str, at: dt.datetime) -> None:
    """The dealer's lead follows the sale: converted at delivery, lost when the order is cancelled."""
    lead = db.session.get(SalesLead, referral.lead_id) if referral.lead_id else None
    if lead is not None:
        lead.status, lead.updated_at = status, at


def _within_window(referral: Referral, at: dt.datetime) -> bool:
    return not _before_attribution(referral, at) and at <= referral.expires_at


def test_drive(phone: str, *, model_code: str, at: dt.datetime) -> Referral | None:
    referral = _referral_for_phone(phone)
    if referral is None or referral.test_drive_at is not None or not _within_window(referral, at):
        return None
    referral.test_drive_at = at
    referral.model_code = referral.model_code or model_code
    if _advance(referral, "test_drive", at):
        rewards.reward_small(referral, "test_drive", at)
    return referral


def order(phone: str, *, order_no: str, model_code: str, price_fen: int, at: dt.datetime) -> Referral | None:
    referral = _referral_for_phone(phone)
    if referral is None or referral.ordered_at is not None or not _within_window(referral, at):
        return None
    referral.order_no, referral.ordered_at = order_no, at
    referral.model_code, referral.price_fen = model_code, price_fen
    if _advance(referral, "order", at):
        rewards.reward_small(referral, "order", at)
    return referral


def delivery(phone: str, *, order_no: str, model_code: str, price_fen: int, at: dt.datetime) -> Referral | None:
    """The referee's car was delivered: the referrer's big reward (pending for the cooling period)."""
    referral = _referral_for_phone(phone)
    if referral is None or referral.delivered_at is not None or referral.cancelled_at is not None:
        return None
    if _before_attribution(referral, at):
        return None  # bought before the referral: not a referred sale
    referral.delivered_at = at
    referral.order_no = referral.order_no or order_no
    referral.ordered_at = referral.ordered_at or at
    referral.model_code, referral.price_fen = model_code, price_fen
    _advance(referral, "delivery", at)
    _lead_status(referral, "converted", at)
    rewards.reward_delivery(referral, at)
    return referral


def cancellation(order_no: str, *, on: dt.date, at: dt.datetime, source_event_id: int | None) -> Referral | None:
    referral = db.session.scalar(
        sa.select(Referral)
        .where(Referral.order_no == order_no)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if referral is None or referral.cancelled_at is not None:
        return None
    referral.cancelled_at = at
    referral.milestone = "cancelled"
    _lead_status(referral, "lost", at)
    rewards.claw_back(referral, source_event_id=source_event_id, on=on)
    events.publish(
        events.ReferralMilestoneReached(
            referral.id, referral.referrer_member_id, referral.referee_member_id, "cancelled", at
        )
    )
    return referral
