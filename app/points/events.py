"""What the points package tells other packages: settlement asks for cost lines, the CRM outbox
hears of balance changes. Ids only."""

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


@dataclass(frozen=True)
class BalanceChanged(DomainEvent):
    """The member's reward or tier points changed (earn, spend, reverse, release, freeze, merge).

    The nightly expiry batch does not publish it (a million members in a few statements); the
    CRM learns those balances from the member's next change or the nightly reconciliation."""

    member_id: int
