"""Daily rollups for the operator dashboard: one narrow table of (day, metric, dealer, key) → value.

One table rather than one per chart: every metric is a daily count or sum along at most one
dimension besides the dealer (an advisor, a tier, a benefit, a notification kind…), so one shape
serves them all, one job fills them all set-based and one index answers every chart. ``dealer_id``
is the dealer the figure belongs to (the member's enrolling dealer, the booking's or referral's
dealer, the campaign's); 0 when none, so a dealer manager's scope is one equality; -1 holds the
sum over every dealer, so an HQ chart reads one row per day and key, not one per dealer. Derived data:
the rollup job deletes and rewrites a window of days, so the rows are not append-only.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, BigIntType

NO_DEALER = 0
#: A month's sum of a daily flow is kept as ``<metric>@month`` on the month's first day, so a long
#: range reads twelve rows a key instead of 365.
MONTHLY_SUFFIX = "@month"
#: The same figure summed over every dealer (and none): what HQ reads, one row per day and key.
ALL_DEALERS = -1


class DailyMetric(Base):
    __tablename__ = "daily_metrics"

    # The key's order serves every chart: one metric, one dealer (or -1, all of them), a range of days.
    metric: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    dealer_id: Mapped[int] = mapped_column(BigIntType, primary_key=True)
    day: Mapped[dt.date] = mapped_column(primary_key=True)  # business day (Asia/Shanghai)
    key: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    value: Mapped[int] = mapped_column(BigIntType)
