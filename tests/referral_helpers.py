"""Referral test data: referrers with codes, newcomers who open them, DMS milestone events."""

from __future__ import annotations

import datetime as dt
from typing import Any

from app.core.clock import utcnow
from app.core.db import db
from app.members import services
from app.members.models import Member, WechatIdentity
from app.referrals import attribution, codes
from app.referrals.attribution import Attribution
from tests import dms_events, factories


def newcomer(*, sharing: bool = True, **fields: Any) -> Member:
    """A member who just registered in the mini-app (consent given, with or without dealer sharing)."""
    member = factories.member(channel="miniapp", **fields)
    if sharing:
        services.record_consent(member, policy_version="2026.1", granted=["dealer_sharing"], channel="miniapp")
    return member


def identity(member: Member, unionid: str) -> None:
    openid = f"o-{unionid}-{member.id}"
    db.session.add(
        WechatIdentity(member_id=member.id, app_kind="miniapp", app_id="wxmini", openid=openid, unionid=unionid)
    )
    db.session.flush()


def refer(referrer: Member, referee: Member, *, at: dt.datetime | None = None, **kw: Any) -> Attribution:
    kw.setdefault("dealer_code", "D0101")
    return attribution.attribute(codes.code_of(referrer.id).code, referee, at=at or utcnow(), **kw)


def order_placed(phone: str, order_no: str, *, price_fen: int = 20_000_000, **kw: Any) -> dict[str, Any]:
    return dms_events._envelope(
        "order.placed",
        {
            "order_no": order_no,
            "phone": phone,
            "model_code": "MAGOTAN",
            "price_fen": price_fen,
            "ordered_on": utcnow().date().isoformat(),
        },
        **kw,
    )
