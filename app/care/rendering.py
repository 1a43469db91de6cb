"""What each kind of notification says, rendered when it is sent (in the member's locale), from
the data as it is then: points already spent or a tier already kept are not reminded of."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import sqlalchemy as sa

from app.care import maintenance, rules
from app.care.models import MemberLifecycle, Notification
from app.core.clock import business_day_start, to_business
from app.core.db import db
from app.core.i18n import _, _l
from app.mall import recommendations
from app.members.identifiers import mask_name, mask_phone
from app.members.models import Member, Ownership, Vehicle
from app.points.models import PointAccount, PointLot
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


#: Points expiring per (member, last day), loaded for a dispatcher's batch (``preloaded_points``).
_PRELOADED_POINTS: ContextVar[dict[tuple[int, dt.date], int] | None] = ContextVar("care_points", default=None)


def _expiring_lots(last_day: dt.date) -> sa.ColumnElement[bool]:
    start, end = business_day_start(last_day), business_day_start(last_day + dt.timedelta(days=1))
    return sa.and_(PointLot.status == "available", PointLot.expires_at > start, PointLot.expires_at <= end)


def points_expiring_on(member_id: int, last_day: dt.date) -> int:
    """Spendable points of a member that expire at the end of ``last_day`` (business calendar)."""
    preloaded = _PRELOADED_POINTS.get()
    if preloaded is not None and (member_id, last_day) in preloaded:
        return preloaded[(member_id, last_day)]
    total = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(PointLot.remaining), 0)).where(
            PointLot.member_id == member_id, _expiring_lots(last_day)
        )
    )
    return int(total or 0)


def expiring_day(notification: Notification) -> dt.date:
    """The last day of the points a ``points_expiring`` reminder is about (its period's date)."""
    return dt.date.fromisoformat(str(notification.period).split(":")[0])


@contextmanager
def preloaded(notifications: Iterable[Notification]) -> Iterator[None]:
    """Render a batch's expiry reminders from a few set queries (the points expiring, one query per
    last day; the mall's recommendation inputs), not several queries per message."""
    wanted: dict[dt.date, set[int]] = {}
    for notification in notifications:
        if notification.kind == "points_expiring" and notification.member_id is not None:
            wanted.setdefault(expiring_day(notification), set()).add(notification.member_id)
    with _preloaded_points(wanted), recommendations.preloaded(set().union(*wanted.values())):
        yield


@contextmanager
def _preloaded_points(wanted: dict[dt.date, set[int]]) -> Iterator[None]:
    points: dict[tuple[int, dt.date], int] = {}
    for last_day, member_ids in wanted.items():
        points.update(dict.fromkeys(((member_id, last_day) for member_id in member_ids), 0))
        rows = db.session.execute(
            sa.select(PointLot.member_id, sa.func.sum(PointLot.remaining))
            .where(PointLot.member_id.in_(sorted(member_ids)), _expiring_lots(last_day))
            .group_by(PointLot.member_id)
        )
        points.update({(member_id, last_day): int(total or 0) for member_id, total in rows})
    token = _PRELOADED_POINTS.set(points)
    try:
        yield
    finally:
        _PRELOADED_POINTS.reset(token)


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
    last_day = expiring_day(notification)
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


def _active_member(notification: Notification) -> Member | None:
    member = db.session.get(Member, notification.member_id)
    return member if member is not None and member.status == "active" else None


def _welcome(notification: Notification) -> TemplateData | None:
    member = _active_member(notification)
    if member is None:
        return None
    tier = policy.current_tier(member.id)
    return _fields(
        _("Welcome to the member program!"),
        tier_name(tier),
        "、".join(tier_highlights(tier)),
        _("Earn points with every purchase, service visit, insurance renewal and successful referral."),
    )


def _birthday(notification: Notification) -> TemplateData | None:
    member = _active_member(notification)
    day = to_business(notification.due_at).date()
    if member is None or member.birth_month_day not in rules.birthday_month_days(day):
        return None  # the birthday was corrected (or erased) since it was planned
    return _fields(
        _("Happy birthday!"),
        _("Birthday month offers"),
        day.isoformat(),
        _("Service visits earn double points all this month. Your birthday offers are in the mini-app."),
    )


def _owned_vehicle(notification: Notification) -> tuple[Vehicle, str] | None:
    """The car of a ``<vehicle id>:<date>`` period and the date, while the member still owns it."""
    vehicle_id, day = str(notification.period).split(":", 1)
    owned = db.session.scalar(
        sa.select(Ownership.id).where(
            Ownership.vehicle_id == int(vehicle_id),
            Ownership.member_id == notification.member_id,
            Ownership.role == "owner",
            Ownership.ended_on.is_(None),
        )
    )
    vehicle = db.session.get(Vehicle, int(vehicle_id)) if owned else None
    return (vehicle, day) if vehicle is not None else None


def _maintenance_due(notification: Notification) -> TemplateData | None:
    owned = _owned_vehicle(notification)
    if owned is None:
        return None  # sold (or no longer this member's) since it was planned
    vehicle, due = owned
    interval = maintenance.interval_for(vehicle.model_code)
    if interval is None or str(maintenance.due_on(vehicle, interval)) != due:
        return None  # serviced since: the next due date is another reminder
    return _fields(
        _("Your car is due for maintenance."),
        vehicle.model_name,
        due,
        _("Book a service visit with your dealer in the mini-app."),
    )


def _insurance_renewal(notification: Notification) -> TemplateData | None:
    owned = _owned_vehicle(notification)
    if owned is None:
        return None
    vehicle, ends_on = owned
    if str(vehicle.insurance_ends_on) != ends_on:
        return None  # renewed since it was planned
    return _fields(
        _("Your car insurance ends soon."),
        vehicle.model_name,
        ends_on,
        _("Renew it at your dealer: the renewal earns points and keeps your tier."),
    )


def _booking(first: object, remark: object) -> Callable[[Notification], TemplateData]:
    """A booking notice: the benefit and its local start time (texts are lazy: rendered at send)."""

    def render(notification: Notification) -> TemplateData:
        starts_at = notification.payload.get("starts_at")
        when = to_business(dt.datetime.fromisoformat(starts_at)).strftime("%Y-%m-%d %H:%M") if starts_at else "—"
        return _fields(str(first), notification.payload["benefit_code"], when, str(remark))

    return render


def _rating_request(notification: Notification) -> TemplateData:
    return _fields(
        _("How was it?"),
        notification.payload["benefit_code"],
        to_business(notification.created_at).date().isoformat(),
        _("Please rate the service in the mini-app: it helps your dealer do better."),
    )


def _win_back(notification: Notification) -> TemplateData | None:
    member = _active_member(notification)
    stage = db.session.scalar(
        sa.select(MemberLifecycle.stage).where(MemberLifecycle.member_id == notification.member_id)
    )
    if member is None or stage != "churn_risk":
        return None  # came back (or left) since it was planned
    available = db.session.scalar(sa.select(PointAccount.reward_available).where(PointAccount.member_id == member.id))
    return _fields(
        _("We miss you!"),
        _("%(points)s points", points=f"{available or 0:,}"),
        to_business(notification.due_at).date().isoformat(),
        _("Your points and member offers are waiting: book a service visit or visit the points mall."),
    )


#: What the referrer reads for each milestone of their friend.
MILESTONE_NAMES = {
    "lead": _l("Signed up with your referral"),
    "test_drive": _l("Test drive taken"),
    "order": _l("Car ordered"),
    "delivery": _l("Car delivered"),
}


def _referral_milestone(notification: Notification) -> TemplateData | None:
    payload = notification.payload
    friend = db.session.get(Member, payload["referee_member_id"])
    if _active_member(notification) is None or friend is None:
        return None
    return _fields(
        _("Your friend has reached a milestone."),
        mask_name(friend.name) or mask_phone(friend.phone) or _("Your friend"),
        str(MILESTONE_NAMES[payload["milestone"]]),
        _("See all your referrals and rewards in the mini-app."),
    )


def _referral_reward(notification: Notification) -> TemplateData | None:
    if _active_member(notification) is None:
        return None
    payload = notification.payload
    available = to_business(dt.datetime.fromisoformat(payload["available_at"])).date()
    return _fields(
        _("Your referral reward has been credited."),
        _("%(points)s points", points=f"{payload['reward_points']:,}"),
        available.isoformat(),
        _("The points can be spent from the date shown. Thank you for recommending us!"),
    )


RENDERERS: dict[str, Callable[[Notification], TemplateData | None]] = {
    "tier_upgrade": _tier_upgrade,
    "tier_dropped": _tier_dropped,
    "points_expiring": _points_expiring,
    "anniversary": _anniversary,
    "tier_at_risk": _tier_at_risk,
    "welcome": _welcome,
    "birthday": _birthday,
    "maintenance_due": _maintenance_due,
    "insurance_renewal": _insurance_renewal,
    "booking_confirmed": _booking(_l("Your booking is confirmed."), _l("You can see or change it in the mini-app.")),
    "booking_reminder": _booking(
        _l("A reminder of your booking tomorrow."),
        _l("If you cannot come, please change or cancel it in the mini-app."),
    ),
    "rating_request": _rating_request,
    "win_back": _win_back,
    "referral_milestone": _referral_milestone,
    "referral_reward": _referral_reward,
}


#: Subscribe-message ``thing`` fields take at most 20 characters.
SUBSCRIBE_FIELD_LIMIT = 20


def subscribe_fields(data: TemplateData, mapping: dict[str, str]) -> TemplateData:
    """The rendered fields under the subscribe template's names (``thing1``…), cut to fit."""
    return {
        name: {"value": data.get(source, {}).get("value", "")[:SUBSCRIBE_FIELD_LIMIT]}
        for name, source in mapping.items()
    }


def sms_params(data: TemplateData, mapping: dict[str, str]) -> dict[str, str]:
    """The rendered fields as the SMS template's parameters (plain values)."""
    return {name: data.get(source, {}).get("value", "") for name, source in mapping.items()}


def template_data(notification: Notification) -> TemplateData | None:
    """The template message's fields, or None when there is nothing to say any more."""
    return RENDERERS[notification.kind](notification)
