"""What a member sees of their referrals: code, link, and each referee masked with its milestone
and reward status (shared by the mini-app API and the chat keyword 推荐)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.db import db
from app.members.identifiers import mask_name, mask_phone
from app.members.models import Member
from app.points.models import PointEntry, PointLot
from app.referrals import codes, rewards
from app.referrals.models import Referral


@dataclass(frozen=True)
class RefereeLine:
    referral_id: int
    name: str | None
    phone: str | None
    milestone: str
    reward_status: str
    reward_points: int
    attributed_at: dt.datetime
    expires_at: dt.datetime
    #: When the delivery reward becomes spendable (None: not credited, or already spendable).
    available_at: dt.datetime | None


@dataclass(frozen=True)
class MyReferrals:
    code: str
    link: str
    scene: str
    rewarded_this_year: int
    yearly_cap: int
    referees: list[RefereeLine]


def _pending_until(referral: Referral) -> dt.datetime | None:
    if referral.reward_status != "credited":
        return None
    return db.session.scalar(
        sa.select(sa.func.max(PointLot.available_at))
        .join(PointEntry, PointEntry.id == PointLot.entry_id)
        .where(
            PointEntry.source_ref == rewards.ref_of(referral),
            PointEntry.member_id == referral.referrer_member_id,
            PointLot.status.in_(("pending", "held")),
        )
    )


def my_referrals(member: Member, *, device_id: str | None = None) -> MyReferrals:
    code = codes.code_of(member.id)
    codes.record_device(member.id, codes.device_hash(device_id))
    rows = db.session.execute(
        sa.select(Referral, Member)
        .join(Member, Member.id == Referral.referee_member_id)
        .where(Referral.referrer_member_id == member.id)
        .order_by(Referral.attributed_at.desc())
    ).all()
    return MyReferrals(
        code=code.code,
        link=codes.share_link(code),
        scene=codes.scene_of(code),
        rewarded_this_year=rewards.rewarded_this_year(member.id, utcnow()),
        yearly_cap=rewards.YEARLY_CAP.value(),
        referees=[_line(referral, referee) for referral, referee in rows],
    )


def _line(referral: Referral, referee: Member) -> RefereeLine:
    return RefereeLine(
        referral_id=referral.id,
        name=mask_name(referee.name),
        phone=mask_phone(referee.phone),
        milestone=referral.milestone,
        reward_status=referral.reward_status,
        reward_points=referral.reward_points,
        attributed_at=referral.attributed_at,
        expires_at=referral.expires_at,
        available_at=_pending_until(referral),
    )


def as_referrer(member_id: int, *, page: int, per_page: int) -> tuple[list[RefereeLine], int]:
    """The member's referrals as referrer, newest first, referees masked; reads only (the member 360)."""
    query = sa.select(Referral).where(Referral.referrer_member_id == member_id)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = db.session.execute(
        sa.select(Referral, Member)
        .join(Member, Member.id == Referral.referee_member_id)
        .where(Referral.referrer_member_id == member_id)
        .order_by(Referral.attributed_at.desc(), Referral.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return [_line(referral, referee) for referral, referee in rows], total
