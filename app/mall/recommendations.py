"""What to redeem, explained: a ranking from the balance, the points expiring soon, the tier and
past redemptions. The care engine's expiring-points reminder can call ``for_member`` too.

The rule, in order: only items the member may redeem now (open, tier, stock, limits, affordable);
when points expire within 30 days, items that use them up best come first (the price closest to
the expiring points without exceeding the balance); then kinds the member redeemed before; then
the cheaper item. Each pick says why in the member's language.
"""

from __future__ import annotations

import datetime as dt
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
from app.tiers.policy import current_tier


@dataclass(frozen=True)
class Recommendation:
    offer: Offer
    reason: str  # expiring_points | redeemed_before | affordable
    message: str
    item_name: str


def _kinds_redeemed(member_id: int) -> set[str]:
    return set(
        db.session.scalars(
            sa.select(MallItem.kind)
            .join(RedemptionOrder, RedemptionOrder.item_id == MallItem.id)
            .where(RedemptionOrder.member_id == member_id, RedemptionOrder.status != "cancelled")
            .distinct()
        )
    )


def for_member(member_id: int, *, limit: int = 3, now: dt.datetime | None = None) -> list[Recommendation]:
    """Up to ``limit`` items, best first, each with its reason (call inside the member's locale)."""
    now = now or utcnow()
    balance = queries.balance(member_id, now=now)
    expiring = balance.expiring_30_days
    usual = _kinds_redeemed(member_id)
    usable = [o for o in catalog.offers(member_id, current_tier(member_id), balance.available, now) if o.redeemable]

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
