"""Time: stored in UTC, business calendars in Asia/Shanghai."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

BUSINESS_TZ = ZoneInfo("Asia/Shanghai")


def utcnow() -> dt.datetime:
    """The current instant as an aware UTC datetime (the only clock domain code reads)."""
    return dt.datetime.now(dt.UTC)


def business_today() -> dt.date:
    """Today's date on the program's business calendar (Asia/Shanghai)."""
    return utcnow().astimezone(BUSINESS_TZ).date()


def to_business(moment: dt.datetime) -> dt.datetime:
    """An aware datetime expressed in Asia/Shanghai, for display and calendar arithmetic."""
    return moment.astimezone(BUSINESS_TZ)


def business_day_start(day: dt.date) -> dt.datetime:
    """00:00 Asia/Shanghai on ``day``, as aware UTC."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=BUSINESS_TZ).astimezone(dt.UTC)


#: The calendar the program computes with. A partner's or operator's year-1 or year-9999 date is
#: refused where it comes in, instead of overflowing date arithmetic (time zones, periods) later.
EARLIEST_DAY = dt.date(1900, 1, 1)
LATEST_DAY = dt.date(2199, 12, 31)


def within_calendar(value: dt.date) -> bool:
    """A date, or a datetime by its own calendar date (converting year 1 could itself overflow),
    between ``EARLIEST_DAY`` and ``LATEST_DAY``."""
    day = value.date() if isinstance(value, dt.datetime) else value
    return EARLIEST_DAY <= day <= LATEST_DAY


def _in_calendar(value: dt.date, text: str) -> dt.date:
    if not within_calendar(value):
        raise ValueError(f"{text} is outside {EARLIEST_DAY}..{LATEST_DAY}")
    return value


def parse_day(text: str) -> dt.date:
    """``YYYY-MM-DD`` within the program's calendar; ValueError otherwise."""
    return _in_calendar(dt.date.fromisoformat(text), text)


def parse_partner_moment(text: str) -> dt.datetime:
    """An ISO 8601 instant from a partner's answer → aware UTC; ValueError if unreadable or outside
    the calendar. Without an offset it means Beijing time (never this machine's local time)."""
    moment = _in_calendar(dt.datetime.fromisoformat(text), text)
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=BUSINESS_TZ)).astimezone(dt.UTC)


def parse_local_moment(text: str) -> dt.datetime:
    """A naive ``YYYY-MM-DDTHH:MM[:SS]`` in Beijing time within the calendar → aware UTC; ValueError otherwise
    (an offset given is refused: the form means Beijing time)."""
    if dt.datetime.fromisoformat(text).tzinfo is not None:
        raise ValueError(f"{text} is not a Beijing time: it has an offset")
    return parse_partner_moment(text)
