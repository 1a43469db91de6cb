"""What to redeem, explained: a ranking from the balance, the points expiring soon, the tier and
past redemptions. The care engine's expiring-points reminder can call ``for_member`` too.

The rule, in order: only items the member may redeem now (open, tier, stock, limits, affordable);
when points expire within 30 days, items that use them up best come first (the price closest to
the expiring points without exceeding the balance); then kinds the member redeemed before; then
the cheaper item. Each pick says why in the member's language.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import sqlalchemy as sa
from babel import Locale
from flask_babel import get_locale

from app.core.clock import to_business, utcnow
from app.core.db import db
from app.core.i18n import _, catalog_name
from app.mall import catalog
from app.mall.catalog import Offer
from app.mall.models import MallItem, RedemptionOrder
from app.points import queries
from app.tiers.policy import current_tiers


@dataclass(frozen=True)
class Recommendation:
    offer: Offer
    reason: str  # expiring_points | redeemed_before | affordable
    message: str
    item_name: str


def _kinds_redeemed(member_ids: Collection[int]) -> dict[int, set[str]]:
    kinds: dict[int, set[str]] = {member_id: set() for member_id in member_ids}
    for member_id, kind in db.session.execute(
        sa.select(RedemptionOrder.member_id, MallItem.kind)
        .join(RedemptionOrder, RedemptionOrder.item_id == MallItem.id)
        .where(RedemptionOrder.member_id.in_(sorted(kinds)), RedemptionOrder.status != "cancelled")
        .distinct()
    ):
        kinds[member_id].add(kind)
    return kinds


@dataclass(frozen=True)
class _Inputs:
    """What the ranking reads, for a set of members: balances, tiers, kinds redeemed, and the open
    items with their flash offers (the same for everyone)."""

    now: dt.datetime
    balances: dict[int, queries.Balance]
    tiers: dict[int, str]
    usual: dict[int, set[str]]
    items: list[tuple[MallItem, catalog.FlashOffer | None]]


def _inputs(member_ids: Collection[int], now: dt.datetime) -> _Inputs:
    items = [item for item in db.session.scalars(_OPEN_ITEMS) if catalog.is_open(item, now)]
    return _Inputs(
        now,
        queries.balances(member_ids, now=now),
        current_tiers(member_ids),
        _kinds_redeemed(member_ids),
        [(item, catalog.flash_offer_now(item.id, now)) for item in items],
    )


_OPEN_ITEMS = sa.select(MallItem).where(MallItem.active.is_(True)).order_by(MallItem.points_price)
_PRELOADED: ContextVar[_Inputs | None] = ContextVar("recommendation_inputs", default=None)


@contextmanager
def preloaded(member_ids: Collection[int], now: dt.datetime | None = None) -> Iterator[None]:
    """``for_member`` for these members from a few set queries (a batch of reminders), not four or
    more queries each."""
    token = _PRELOADED.set(_inputs(set(member_ids), now or utcnow()) if member_ids else None)
    try:
        yield
    finally:
        _PRELOADED.reset(token)


def for_member(member_id: int, *, limit: int = 3, now: dt.datetime | None = None) -> list[Recommendation]:
    """Up to ``limit`` items, best first, each with its reason (call inside the member's locale)."""
    inputs = _PRELOADED.get()
    if inputs is None or member_id not in inputs.balances or (now is not None and now != inputs.now):
        inputs = _inputs({member_id}, now or utcnow())
    now = inputs.now
    balance, tier, usual = inputs.balances[member_id], inputs.tiers[member_id], inputs.usual[member_id]
    expiring = balance.expiring_30_days
    usable = [
        o
        for o in (
            catalog.offer(item, member_id, tier, balance.available, now, flash=flash)
            for item, flash in inputs.items
            if catalog.tier_allowed(item, tier)
        )
        if o.redeemable
    ]

    def rank(o: Offer) -> tuple[int, int, int]:
        uses_expiring = 0 if expiring and o.unit_points <= balance.available else 1
        closeness = abs(expiring - o.unit_points) if expiring else 0
        return (uses_expiring, 0 if o.item.kind in usual else 1, closeness or o.unit_points)

    picks = sorted(usable, key=rank)[:limit]
    expiry_day = to_business(balance.next_expiry_on).date().isoformat() if balance.next_expiry_on else ""
    result = []
    for o in picks:
        name = catalog.localized(o.item.name, _locale())
        if expiring:
            reason = "expiring_points"
            message = _(
                "Spend the %(points)s points that expire by %(day)s on %(item)s.",
                points=expiring,
                day=expiry_day,
                item=name,
            )
        elif o.item.kind in usual:
            reason, message = "redeemed_before", _("Like what you redeemed before: %(item)s.", item=name)
        else:
            reason, message = "affordable", _("Your points are enough for %(item)s.", item=name)
        result.append(Recommendation(o, reason, message, name))
    return result


def _locale() -> str:
    return catalog_name(get_locale() or Locale.parse("zh_CN"))
