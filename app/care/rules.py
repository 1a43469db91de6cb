"""What a member would expect of reminders: nothing non-urgent at night (held, not dropped)."""

from __future__ import annotations

import calendar
import datetime as dt

from app.core import tunables
from app.core.clock import BUSINESS_TZ, business_day_start

QUIET_HOURS = tunables.define(
    "care.quiet_hours",
    {"start": "21:00", "end": "08:00"},
    "Non-urgent notifications planned inside these hours (Asia/Shanghai) are held until the end",
)
#: Local time of day at which the day's reminders go out.
SEND_AT = dt.time(9, 0)
#: Kinds a member wants at once, whatever the hour (they answer something the member just did).
URGENT_KINDS = frozenset({"chat_reply"})


def _clock(value: str) -> dt.time:
    hours, minutes = value.split(":")
    return dt.time(int(hours), int(minutes))


def outside_quiet_hours(kind: str, due_at: dt.datetime) -> dt.datetime:
    """``due_at``, or the end of the quiet hours it falls in (for non-urgent kinds)."""
    if kind in URGENT_KINDS:
        return due_at
    hours = QUIET_HOURS.value()
    start, end = _clock(hours["start"]), _clock(hours["end"])
    local = due_at.astimezone(BUSINESS_TZ)
    moment = local.time()
    if start <= end:  # a window within one day, e.g. 13:00-14:00
        quiet = start <= moment < end
        end_day = local.date()
    else:  # across midnight, e.g. 21:00-08:00
        quiet = moment >= start or moment < end
        end_day = local.date() + dt.timedelta(days=1) if moment >= start else local.date()
    if not quiet:
        return due_at
    return dt.datetime.combine(end_day, end, tzinfo=BUSINESS_TZ).astimezone(dt.UTC)


def reminder_time(day: dt.date) -> dt.datetime:
    """09:00 Asia/Shanghai on ``day``, as UTC: when the day's reminders go out."""
    return business_day_start(day) + dt.timedelta(hours=SEND_AT.hour, minutes=SEND_AT.minute)


def birthday_month_days(today: dt.date) -> list[int]:
    """MMDD values greeted today: 29 February birthdays are greeted on the 28th in common years."""
    days = [today.month * 100 + today.day]
    if (today.month, today.day) == (2, 28) and not calendar.isleap(today.year):
        days.append(229)
    return days


MARKETING_KINDS = tunables.define(
    "care.marketing_kinds",
    ["anniversary", "birthday", "churn_risk", "win_back"],
    "Kinds that are marketing (greetings and offers): need the marketing consent and are frequency-capped",
)


def category_of(kind: str) -> str | None:
    """``marketing``, ``service``, or None for a chat reply (an answer, in no opt-out category)."""
    if kind in URGENT_KINDS:
        return None
    return "marketing" if kind in MARKETING_KINDS.value() else "service"
