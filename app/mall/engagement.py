"""Activities that earn, called from the mini-app (SPEC §3): the daily sign-in with its streak,
surveys and content activities (an article read, content shared). The points and their caps are
the earning rules on ``activity.*`` events (``points/activities``); this module decides what
counts once (``ONCE_PER``: per content id, per member and day, or per content and day) and turns
a capped activity into a localized refusal."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from app.core import tunables
from app.core.clock import to_business, utcnow
from app.core.db import db, insert_if_absent
from app.core.errors import Conflict
from app.core.i18n import _l
from app.mall.models import SignIn
from app.members.models import Member
from app.points.activities import credit_activity, record_activity

#: The activities the mini-app reports (the sign-in has its own endpoint).
CONTENT_ACTIVITIES = ("survey", "article_read", "content_shared")
ONCE_PER = tunables.define(
    "activities.once_per",
    {"survey": "content", "article_read": "content", "content_shared": "content_day"},
    "What makes a mini-app activity count once: content (per content id), day (per member and day) "
    "or content_day (per content id and day)",
)


class ActivityCapped(Conflict):
    code = "activity_capped"
    default_message = _l("You have earned all the points this activity gives for now; thank you for taking part.")


@dataclass(frozen=True)
class ActivityResult:
    activity: str
    ref: str
    points: int
    new: bool


@dataclass(frozen=True)
class SignInResult:
    day: dt.date
    signed_in_today: bool
    new: bool
    points: int
    streak: int


def _row(member_id: int, day: dt.date) -> SignIn | None:
    return db.session.get(SignIn, (member_id, day))


def today_status(member: Member, now: dt.datetime | None = None) -> SignInResult:
    """Today's sign-in (if any) and the streak standing now."""
    day = to_business(now or utcnow()).date()
    row = _row(member.id, day)
    if row is not None:
        return SignInResult(day, True, False, row.points, row.streak)
    yesterday = _row(member.id, day - dt.timedelta(days=1))
    return SignInResult(day, False, False, 0, yesterday.streak if yesterday else 0)


def sign_in(member: Member, now: dt.datetime | None = None) -> SignInResult:
    """Sign in for today (Asia/Shanghai), once: a repeat, even a concurrent one, returns the first."""
    now = now or utcnow()
    day = to_business(now).date()
    yesterday = _row(member.id, day - dt.timedelta(days=1))
    streak = (yesterday.streak if yesterday else 0) + 1
    inserted = insert_if_absent(
        SignIn,
        {"member_id": member.id, "day": day, "streak": streak, "points": 0, "created_at": now},
        ("member_id", "day"),
    )
    if inserted is None:
        row = db.session.scalar(
            sa.select(SignIn)
            .where(SignIn.member_id == member.id, SignIn.day == day)
            .execution_options(populate_existing=True)
        )
        assert row is not None
        return SignInResult(day, True, False, row.points, row.streak)
    points = record_activity(member, "daily_sign_in", ref=day.isoformat(), at=now)  # capped per month by its rule
    db.session.execute(sa.update(SignIn).where(SignIn.member_id == member.id, SignIn.day == day).values(points=points))
    return SignInResult(day, True, True, points, streak)


def activity_done(member: Member, activity: str, content_id: str, now: dt.datetime | None = None) -> ActivityResult:
    """A survey completed, an article read, content shared: its points once (``ONCE_PER``), within
    the rule's caps. A repeat answers ``new`` false with 0 points; a capped one is refused (409)."""
    now = now or utcnow()
    day = to_business(now).date().isoformat()
    scope = ONCE_PER.value().get(activity, "content")
    key = {"day": day, "content_day": f"{content_id}:{day}"}.get(scope, content_id)
    credit = credit_activity(member, activity, ref=f"{activity}:{key}", at=now)
    if credit.capped:
        raise ActivityCapped(details={"activity": activity})
    return ActivityResult(activity, content_id, credit.points, not credit.repeated)


def survey_answered(member: Member, survey_id: str, now: dt.datetime | None = None) -> int:
    """Points for a survey, once per survey and member; 0 when already counted or capped."""
    return record_activity(member, "survey", ref=f"survey:{survey_id}", at=now)
