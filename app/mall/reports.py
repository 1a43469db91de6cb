"""Operators' views of the mall: redemptions per item and month (points, their ¥ value, the cost),
as rows or CSV, and items running low on stock (a check job and the back-office list)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from dataclasses import dataclass

import sqlalchemy as sa

from app.core.clock import business_day_start, utcnow
from app.core.db import db
from app.jobs import job
from app.mall.catalog import COUNTED_STATUSES, localized
from app.mall.models import MallItem, RedemptionOrder

log = logging.getLogger(__name__)
#: SPEC §3: 5 reward points = ¥1, so one point is worth 20 fen.
FEN_PER_POINT = 20


@dataclass(frozen=True)
class ReportLine:
    item: str
    name: str
    kind: str
    orders: int
    units: int
    points: int
    points_value_fen: int
    cost_fen: int


def _next_month(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def redemptions(month: dt.date, locale: str = "zh_CN") -> list[ReportLine]:
    """Orders made in the business month (Asia/Shanghai) and not cancelled, per item."""
    start, end = business_day_start(month), business_day_start(_next_month(month))
    rows = db.session.execute(
        sa.select(
            MallItem.code,
            MallItem.name,
            MallItem.kind,
            sa.func.count(RedemptionOrder.id),
            sa.func.sum(RedemptionOrder.quantity),
            sa.func.sum(RedemptionOrder.points_spent),
            sa.func.sum(RedemptionOrder.cost_fen),
        )
        .join(RedemptionOrder, RedemptionOrder.item_id == MallItem.id)
        .where(
            RedemptionOrder.created_at >= start,
            RedemptionOrder.created_at < end,
            RedemptionOrder.status.in_(COUNTED_STATUSES),
        )
        .group_by(MallItem.id, MallItem.code, MallItem.name, MallItem.kind)
        .order_by(MallItem.code)
    ).all()
    return [
        ReportLine(
            code, localized(name, locale), kind, orders, int(units), int(points), int(points) * FEN_PER_POINT, int(cost)
        )
        for code, name, kind, orders, units, points, cost in rows
    ]


def redemptions_csv(month: dt.date, locale: str = "zh_CN") -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["month", "item", "name", "kind", "orders", "units", "points", "points_value_yuan", "cost_yuan"])
    for line in redemptions(month, locale):
        writer.writerow(
            [
                f"{month:%Y-%m}",
                line.item,
                line.name,
                line.kind,
                line.orders,
                line.units,
                line.points,
                f"{line.points_value_fen / 100:.2f}",
                f"{line.cost_fen / 100:.2f}",
            ]
        )
    return out.getvalue()


@dataclass(frozen=True)
class StockAlert:
    item: MallItem
    redeemed_last_7_days: int


def low_stock(now: dt.datetime | None = None) -> list[StockAlert]:
    """Active items at or below their low-stock threshold, emptiest first."""
    since = (now or utcnow()) - dt.timedelta(days=7)
    recent = (
        sa.select(sa.func.coalesce(sa.func.sum(RedemptionOrder.quantity), 0))
        .where(
            RedemptionOrder.item_id == MallItem.id,
            RedemptionOrder.created_at >= since,
            RedemptionOrder.status.in_(COUNTED_STATUSES),
        )
        .scalar_subquery()
    )
    rows = db.session.execute(
        sa.select(MallItem, recent)
        .where(MallItem.active.is_(True), MallItem.stock <= MallItem.low_stock_threshold)
        .order_by(MallItem.stock, MallItem.code)
    ).all()
    return [StockAlert(item, int(units)) for item, units in rows]


@job("periodic")
def check_low_stock() -> int:
    """Hourly: log a warning per item running low (the back-office list shows the same)."""
    alerts = low_stock()
    for alert in alerts:
        log.warning(
            "mall item %s low on stock: %d left (threshold %d, %d redeemed in 7 days)",
            alert.item.code,
            alert.item.stock,
            alert.item.low_stock_threshold,
            alert.redeemed_last_7_days,
        )
    return len(alerts)
