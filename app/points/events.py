"""Events the points package publishes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.core.events import DomainEvent


@dataclass(frozen=True)
class SettlementMonthComputing(DomainEvent):
    """Draft statements of a month are being (re)computed: packages with costs to settle with
    dealers (benefits) write their lines now, within the transaction, via ``settlement.replace_lines``."""

    month: dt.date
    starts_at: dt.datetime
    ends_at: dt.datetime
