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


def parse_day(text: str) -> dt.date:
    """``YYYY-MM-DD`` within the program's calendar; ValueError otherwise."""
    day = dt.date.fromisoformat(text)
    if not within_calendar(day):
        raise ValueError(f"{text} is outside {EARLIEST_DAY}..{LATEST_DAY}")
    return day


def parse_partner_moment(text: str) -> dt.datetime:
    """An ISO 8601 instant from a partner's answer → aware UTC; ValueError if unreadable or outside
    the calendar. Without an offset it means Beijing time (never this machine's local time)."""
    moment = dt.datetime.fromisoformat(text)
    if not within_calendar(moment):
        raise ValueError(f"{text} is outside {EARLIEST_DAY}..{LATEST_DAY}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=BUSINESS_TZ)
    return moment.astimezone(dt.UTC)


def parse_local_moment(text: str) -> dt.datetime:
    """A naive ``YYYY-MM-DDTHH:MM[:SS]`` in Beijing time within the calendar → aware UTC; ValueError otherwise
    (an offset given is refused: the form means Beijing time)."""
    local = dt.datetime.fromisoformat(text)
    if local.tzinfo is not None or not within_calendar(local):
        raise ValueError(f"{text} is not a Beijing time within {EARLIEST_DAY}..{LATEST_DAY}")
    return local.replace(tzinfo=BUSINESS_TZ).astimezone(dt.UTC)
