"""What the points package tells other packages (the CRM outbox subscribes). Ids only."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.events import DomainEvent


@dataclass(frozen=True)
class BalanceChanged(DomainEvent):
    """The member's reward or tier points changed (earn, spend, reverse, release, freeze, merge).

    The nightly expiry batch does not publish it (a million members in a few statements); the
    CRM learns those balances from the member's next change or the nightly reconciliation."""

    member_id: int
