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
