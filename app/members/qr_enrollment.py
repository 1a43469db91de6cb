"""Joining by scanning one of our QR codes: the buyer's order code, or an advisor's personal code.

The WeChat channel turns a scan into one of these calls and the result into a reply; everything a
scan changes (identity binding, activation, prospect absorption, attribution, welcome gift, audit)
happens here.

* ``activate_by_order_token`` — the code an advisor shows at delivery: binds this WeChat account
  to the pre-enrolled buyer and activates them (held purchase points and the welcome gift).
* ``enroll_from_advisor_qr`` — an advisor's personal code: a newcomer becomes a member attributed
  to the advisor and dealer for the protection period and gets the welcome gift.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from app.core import audit
from app.core.db import db, memo_in_transaction
from app.dealers.models import Dealer, Staff
from app.members import activation, identities, prospects, services
from app.members.models import Member, WechatIdentity


@dataclass(frozen=True)
class OrderScan:
    """``activated`` (also for the same person scanning again), ``expired``, ``used`` (by someone
    else) or ``identity_taken`` (this WeChat account already belongs to another membership)."""

    outcome: str
    member: Member | None = None
    credited_points: int = 0


@dataclass(frozen=True)
class AdvisorScan:
    """``enrolled``, ``already_member`` or ``invalid_code`` (no active advisor has it)."""

    outcome: str
    member: Member | None = None
    staff: Staff | None = None
    dealer: Dealer | None = None
    credited_points: int = 0


def activate_by_order_token(token_value: str, identity: WechatIdentity, at: dt.datetime) -> OrderScan:
    """Scanning the order enrollment code: this WeChat account becomes the buyer's (once)."""
    token = services.order_token_by_secret(token_value)
    if token is None or (token.used_at is None and token.expires_at <= at):
        return OrderScan("expired")
    if token.used_at is not None and identity.member_id != token.member_id:
        return OrderScan("used")
    member = db.session.get(Member, token.member_id)
    assert member is not None
    scanned_before = identities.member_of(identity)
    if scanned_before is not None and scanned_before.id != member.id and prospects.is_empty_prospect(scanned_before):
        prospects.absorb(scanned_before, into=member, at=at)  # an advisor-QR prospect who has now bought
        db.session.refresh(identity)
    if not identities.bind(identity, member):
        return OrderScan("identity_taken", member)
    token.used_at = token.used_at or at
    result = activation.activate(member, at=at, actor=("member", member.id))
    audit.record(
        actor=("member", member.id),
        action="wechat.bound",
        subject=("member", member.id),
        details={"via": "order_qr", "identity": identity.id},
    )
    return OrderScan("activated", member, result.released_points + result.welcome_points)


def enroll_newcomer(
    identity: WechatIdentity, *, channel: str, at: dt.datetime, staff: Staff | None = None
) -> tuple[Member, int]:
    """A member with no personal data yet (that comes with consent in the mini-app), bound to this
    WeChat account, with the welcome gift. Returns the member and the points credited."""
    member = services.create_member(
        channel=channel,
        status="active",
        enrolled_at=at,
        activated_at=at,
        enrolling_dealer_id=staff.dealer_id if staff else None,
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
    return member, activation.credit_welcome_gift(member, at)


def enroll_from_advisor_qr(staff_code: str, identity: WechatIdentity, at: dt.datetime) -> AdvisorScan:
    """Scanning an advisor's personal code: a newcomer joins with that advisor as theirs."""
    staff, dealer = _advisor(staff_code)
    if staff is None:
        return AdvisorScan("invalid_code")
    member = identities.member_of(identity)
    if member is not None:
        return AdvisorScan("already_member", member, staff, dealer)
    member, credited = enroll_newcomer(identity, channel="advisor_qr", at=at, staff=staff)
    return AdvisorScan("enrolled", member, staff, dealer, credited)


def _advisor(staff_code: str) -> tuple[Staff | None, Dealer | None]:
    """The active advisor with this code and their dealer, in one query, read once per transaction
    (a drain's batch of scans of one advisor's code at a launch asks once)."""

    def load() -> tuple[Staff | None, Dealer | None]:
        row = db.session.execute(
            sa.select(Staff, Dealer)
            .join(Dealer, Dealer.id == Staff.dealer_id)
            .where(Staff.staff_code == staff_code, Staff.active)
        ).one_or_none()
        return (row[0], row[1]) if row is not None else (None, None)

    return memo_in_transaction(("advisor_by_code", staff_code), load, models=(Staff, Dealer))
