"""What each kind of notification says, rendered when it is sent (in the member's locale), from
the data as it is then: points already spent or a tier already kept are not reminded of."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa

from app.care.models import Notification
from app.core.clock import business_day_start, to_business
from app.core.db import db
from app.core.i18n import _
from app.mall import recommendations
from app.members.models import Member
from app.points.models import PointLot
from app.tiers import policy
from app.tiers.display import tier_highlights, tier_name
from app.tiers.models import TierState

TemplateData = dict[str, dict[str, str]]


def _fields(first: str, keyword1: str, keyword2: str, remark: str) -> TemplateData:
    return {
        "first": {"value": first},
        "keyword1": {"value": keyword1},
        "keyword2": {"value": keyword2},
        "remark": {"value": remark},
    }


def points_expiring_on(member_id: int, last_day: dt.date) -> int:
    """Spendable points of a member that expire at the end of ``last_day`` (business calendar)."""
    start, end = business_day_start(last_day), business_day_start(last_day + dt.timedelta(days=1))
    total = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(PointLot.remaining), 0)).where(
            PointLot.member_id == member_id,
            PointLot.status == "available",
            PointLot.expires_at > start,
            PointLot.expires_at <= end,
        )
    )
    return int(total or 0)


def _tier_upgrade(notification: Notification) -> TemplateData:
    to_tier = notification.payload["to_tier"]
    return _fields(
        _("Congratulations, you have been upgraded!"),
        tier_name(to_tier),
        to_business(notification.created_at).date().isoformat(),
        "、".join(tier_highlights(to_tier)),
    )


def _tier_dropped(notification: Notification) -> TemplateData:
    return _fields(
        _("Your membership tier has changed."),
        tier_name(notification.payload["to_tier"]),
        to_business(notification.created_at).date().isoformat(),
        _("One purchase, service visit, insurance renewal or successful referral earns it back."),
    )


def _points_expiring(notification: Notification) -> TemplateData | None:
    last_day = dt.date.fromisoformat(str(notification.period).split(":")[0])
    points = points_expiring_on(notification.member_id, last_day)  # type: ignore[arg-type]
    if points == 0:
        return None  # spent (or reversed) since it was planned
    amount = f"{points:,}"
    picks = recommendations.for_member(notification.member_id, limit=1)  # type: ignore[arg-type]
    remark = (
        _("Spend them on %(item)s in the points mall before they expire.", item=picks[0].item_name)
        if picks
        else _("Spend them in the points mall or on a service visit before they expire.")
    )
    return _fields(
        _("Some of your points are about to expire."),
        _("%(points)s points", points=amount),
        last_day.isoformat(),
        remark,
    )


def _anniversary(notification: Notification) -> TemplateData | None:
    member = db.session.get(Member, notification.member_id)
    if member is None or member.status != "active":
        return None
    years = int(str(notification.period)) - to_business(member.enrolled_at).year
    return _fields(
        _("Happy membership anniversary!"),
        _("%(years)s years with us", years=years),
        to_business(member.enrolled_at).date().isoformat(),
        _("Thank you for driving with us. Your member benefits are waiting in the mini-app."),
    )


def _tier_at_risk(notification: Notification) -> TemplateData | None:
    state = db.session.get(TierState, notification.member_id)
    if state is None or not policy.would_drop(state) or str(state.review_on) != notification.period:
        return None  # kept it meanwhile (a purchase, a service visit…) or already reviewed
    return _fields(
        _("Keep your membership tier."),
        tier_name(state.tier),
        str(state.review_on),
        _("One purchase, service visit, insurance renewal or successful referral before then keeps it."),
    )


RENDERERS: dict[str, Callable[[Notification], TemplateData | None]] = {
    "tier_upgrade": _tier_upgrade,
    "tier_dropped": _tier_dropped,
    "points_expiring": _points_expiring,
    "anniversary": _anniversary,
    "tier_at_risk": _tier_at_risk,
}


def template_data(notification: Notification) -> TemplateData | None:
    """The template message's fields, or None when there is nothing to say any more."""
    return RENDERERS[notification.kind](notification)
