"""Staff mode of the mini-app: binding an advisor's WeChat with a one-time invite, and their figures.

A dealer's member manager (or HQ) issues an invite code for a staff member; the advisor enters it
once in the mini-app, which binds their mini-app sign-in to their staff record. Codes are stored
hashed, expire after a day and work once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

import sqlalchemy as sa

from app.core import audit
from app.core.clock import business_day_start, business_today, utcnow
from app.core.db import db
from app.core.errors import NotFound, ValidationFailed
from app.core.i18n import _l
from app.dealers.master_data import target_for
from app.dealers.models import Staff
from app.members import member_code
from app.members.models import Member, StaffInvite, WechatIdentity

INVITE_HOURS = 24
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


def _hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def issue_invite(staff: Staff, *, actor: str) -> tuple[str, dt.datetime]:
    code = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    expires = utcnow() + dt.timedelta(hours=INVITE_HOURS)
    db.session.add(StaffInvite(staff_id=staff.id, code_hash=_hash(code), created_by=actor, expires_at=expires))
    audit.record(actor=("staff", actor), action="staff.invited", subject=("staff", staff.id))
    db.session.flush()
    return code, expires


def bind(identity: WechatIdentity, code: str) -> Staff:
    invite = db.session.scalars(
        sa.select(StaffInvite).where(StaffInvite.code_hash == _hash(code)).with_for_update()
    ).one_or_none()
    if invite is None or invite.used_at is not None or invite.expires_at <= utcnow():
        raise ValidationFailed(fields={"invite_code": [_l("This invite code is invalid, used or expired.")]})
    staff = db.session.get(Staff, invite.staff_id, with_for_update=True)
    assert staff is not None
    if not staff.active:
        raise ValidationFailed(fields={"invite_code": [_l("This invite code is invalid, used or expired.")]})
    previous = db.session.scalar(sa.select(Staff).where(Staff.miniapp_identity_id == identity.id))
    if previous is not None and previous.id != staff.id:
        previous.miniapp_identity_id = None  # one WeChat, one staff record
        db.session.flush()
    staff.miniapp_identity_id = identity.id
    invite.used_at = utcnow()
    audit.record(actor=("staff", staff.staff_code), action="staff.bound", subject=("staff", staff.id))
    db.session.flush()
    return staff


def staff_of(identity: WechatIdentity) -> Staff | None:
    return db.session.scalar(sa.select(Staff).where(Staff.miniapp_identity_id == identity.id, Staff.active))


def scan_member_code(staff: Staff, code: str) -> Member:
    """The member whose code staff scanned at the counter (once per code; audited)."""
    member = db.session.get(Member, member_code.verify(code))
    refused = member is None or member.status == "closed"
    audit.record_regardless(  # a refused scan too: the 404 rolls the request back, not this row
        actor=("staff", staff.staff_code),
        action="member.read",
        subject=("member", member.id if member else "-"),
        reason="member code scanned at the dealer",
        details={"refused": True} if refused else None,
    )
    if refused:
        raise NotFound()
    assert member is not None
    return member


def enrollment_figures(staff: Staff, month: dt.date | None = None) -> dict[str, Any]:
    """Members this advisor enrolled in the month, how many activated within 30 days, vs target."""
    first = (month or business_today()).replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    start, end = business_day_start(first), business_day_start(following)
    rows = db.session.execute(
        sa.select(Member.enrolled_at, Member.activated_at).where(
            Member.enrolling_staff_id == staff.id, Member.enrolled_at >= start, Member.enrolled_at < end
        )
    ).all()
    count = len(rows)
    activated = sum(
        1
        for enrolled_at, activated_at in rows
        if activated_at is not None and activated_at - enrolled_at <= dt.timedelta(days=30)
    )
    target = target_for(staff, first)
    return {
        "month": first.strftime("%Y-%m"),
        "enrolled": count,
        "activated_within_30_days": activated,
        "activation_rate": round(activated / count, 4) if count else 0.0,
        "target": target,
        "target_progress": round(count / target, 4) if target else None,
    }
