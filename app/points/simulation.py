"""Rule simulation: replay the last N days of real stored events against a rule set.

Nothing is written to the ledger. The channel that stores events (the DMS intake) registers a
replay source; for each processed earning event in the window the member is resolved as the live
handler would (today's data), the rules of the draft and of the rules in
force at the event time are evaluated with the same engine, and per-member caps are applied
within the replay. Campaign budgets cap the draft's issuance as they would live. The report says
what the draft would issue (points, cost in ¥, members affected, per rule) and how that differs
from what the published rules give for the same events.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from app.core.clock import to_business, utcnow
from app.dealers.models import Dealer
from app.points.earning import Earner, member_facts, published_rule_set
from app.points.models import RuleSet
from app.points.rules import Candidate, evaluate
from app.points.settlement import POINT_VALUE_FEN

_PERIOD_FORMATS = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}


class _Tally:
    """Points a rule set would issue, with caps and budgets applied as the replay goes."""

    def __init__(self) -> None:
        self.by_currency: dict[str, int] = defaultdict(int)
        self.by_rule: dict[str, int] = defaultdict(int)
        self.members: set[int] = set()
        self._capped: dict[tuple[int, str, str, str], int] = defaultdict(int)
        self._budget_used: dict[str, int] = defaultdict(int)

    def add(self, member_id: int, candidate: Candidate, at: dt.datetime) -> None:
        points = candidate.points
        local = to_business(at)
        for period, cap in (candidate.caps.get("per_member") or {}).items():
            key = (member_id, candidate.rule_code, period, local.strftime(_PERIOD_FORMATS[period]))
            points = min(points, max(0, cap - self._capped[key]))
        if candidate.budget_points is not None:
            points = min(points, max(0, candidate.budget_points - self._budget_used[candidate.rule_code]))
        if points <= 0:
            return
        for period in candidate.caps.get("per_member") or {}:
            self._capped[(member_id, candidate.rule_code, period, local.strftime(_PERIOD_FORMATS[period]))] += points
        self._budget_used[candidate.rule_code] += points
        self.by_currency[candidate.currency] += points
        self.by_rule[candidate.rule_code] += points
        self.members.add(member_id)

    def summary(self) -> dict[str, Any]:
        reward = self.by_currency.get("reward", 0)
        return {
            "reward_points": reward,
            "tier_points": self.by_currency.get("tier", 0),
            "cost_fen": reward * POINT_VALUE_FEN.value(),
            "members_affected": len(self.members),
            "by_rule": dict(sorted(self.by_rule.items())),
        }


@dataclass(frozen=True)
class ReplayedEvent:
    """A stored business event as the earning engine sees it; ``member`` None: nobody to credit."""

    member: Earner | None
    event_type: str
    attributes: dict[str, Any]
    occurred_at: dt.datetime
    dealer: Dealer | None


#: Yields the stored earning events that occurred in [since, until), oldest first.
ReplaySource = Callable[[dt.datetime, dt.datetime], Iterable[ReplayedEvent]]
_sources: list[ReplaySource] = []


def add_replay_source(source: ReplaySource) -> None:
    """Called by the channel that stores events (the DMS intake) when the app starts."""
    if source not in _sources:
        _sources.append(source)


def simulate(rule_set: RuleSet, *, days: int, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    since = now - dt.timedelta(days=days)
    draft, live = _Tally(), _Tally()
    events = skipped = 0
    for source in _sources:
        for event in source(since, now):
            if event.member is None:
                skipped += 1
                continue
            events += 1
            member, at = event.member, event.occurred_at
            context = member_facts(member, event.event_type, event.attributes, at, event.dealer)
            for candidate in evaluate(list(rule_set.rules), context):
                draft.add(member.id, candidate, at)
            in_force = published_rule_set(at)
            for candidate in evaluate(list(in_force.rules) if in_force else [], context):
                live.add(member.id, candidate, at)
    proposed, current = draft.summary(), live.summary()
    return {
        "days": days,
        "from": since.isoformat(),
        "to": now.isoformat(),
        "events": events,
        "events_without_member": skipped,
        "proposed": proposed,
        "published": current,
        "difference": {
            key: proposed[key] - current[key]
            for key in ("reward_points", "tier_points", "cost_fen", "members_affected")
        },
    }
