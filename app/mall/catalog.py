"""The mall's items and flash offers: what HQ sets up, what a member may redeem and what is left
of their limits. Flush, never commit."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from app.core import audit
from app.core.clock import business_day_start, to_business, utcnow
from app.core.db import adopt_loaded, db, driver_execute
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.i18n import _l
from app.mall.models import FlashOffer, MallItem, RedemptionOrder
from app.tiers.models import TIERS

#: Orders in these states count against a member's limits (a cancelled one gives its units back).
COUNTED_STATUSES = ("awaiting_payment", "created", "fulfilled", "completed", "expired")
ITEM_FIELDS = (
    "kind",
    "name",
    "description",
    "image_url",
    "points_price",
    "cash_fen",
    "cost_fen",
    "stock",
    "low_stock_threshold",
    "per_order_limit",
    "per_month_limit",
    "lifetime_limit",
    "eligible_tiers",
    "active_from",
    "active_to",
    "voucher_valid_days",
    "active",
)


class ItemUnavailable(Conflict):
    code = "item_unavailable"
    default_message = _l("This item cannot be redeemed now.")


def localized(text: dict[str, str], locale: str) -> str:
    return text.get(locale) or text.get("zh_CN") or next(iter(text.values()), "")


def item_by_code(code: str) -> MallItem | None:
    return db.session.scalar(sa.select(MallItem).where(MallItem.code == code))


def get_item(code: str) -> MallItem:
    item = item_by_code(code)
    if item is None:
        raise NotFound()
    return item


def _check_item(fields: dict[str, Any]) -> None:
    errors: dict[str, list[Any]] = {}
    tiers = fields.get("eligible_tiers") or []
    if any(t not in TIERS for t in tiers):
        errors["eligible_tiers"] = [_l("Unknown tier.")]
    start, end = fields.get("active_from"), fields.get("active_to")
    if start is not None and end is not None and end <= start:
        errors["active_to"] = [_l("The end must come after the start.")]
    if errors:
        raise ValidationFailed(fields=errors)


def create_item(code: str, fields: dict[str, Any], *, actor: str) -> MallItem:
    """A new item (HQ); the code is unique."""
    if item_by_code(code) is not None:
        raise ValidationFailed(fields={"code": [_l("An item with this code exists.")]})
    _check_item(fields)
    item = MallItem(code=code, created_by=actor, **{k: v for k, v in fields.items() if k in ITEM_FIELDS})
    db.session.add(item)
    db.session.flush()
    audit.record(
        actor=_actor(actor), action="mall.item_created", subject=("mall_item", item.id), details={"code": code}
    )
    return item


def update_item(item: MallItem, fields: dict[str, Any], *, actor: str) -> MallItem:
    """Change an item; stock changes are relative to what is left now (row lock)."""
    merged = {k: getattr(item, k) for k in ITEM_FIELDS} | fields
    _check_item(merged)
    db.session.refresh(item, with_for_update=True)
    for key, value in fields.items():
        if key in ITEM_FIELDS:
            setattr(item, key, value)
    item.updated_at = utcnow()
    db.session.flush()
    audit.record(
        actor=_actor(actor),
        action="mall.item_changed",
        subject=("mall_item", item.id),
        details={k: v for k, v in fields.items() if k in ("points_price", "stock", "active", "cash_fen")},
    )
    return item


def add_stock(item: MallItem, units: int, *, actor: str) -> MallItem:
    """Restock (or, negative, write off) by a relative UPDATE: concurrent redemptions keep counting."""
    changed = db.session.execute(
        sa.update(MallItem)
        .where(MallItem.id == item.id, MallItem.stock + units >= 0)
        .values(stock=MallItem.stock + units, updated_at=utcnow())
        .returning(MallItem.stock)
    ).scalar_one_or_none()
    if changed is None:
        raise ValidationFailed(fields={"units": [_l("Stock cannot go below zero.")]})
    db.session.refresh(item)
    audit.record(
        actor=_actor(actor), action="mall.stock_changed", subject=("mall_item", item.id), details={"units": units}
    )
    return item


def _actor(actor: str) -> tuple[str, str]:
    kind, _, name = actor.partition(":")
    return (kind, name) if name else ("operator", actor)


def list_items() -> list[MallItem]:
    return list(db.session.scalars(sa.select(MallItem).order_by(MallItem.id)))


def add_flash_offer(
    item: MallItem, *, points_price: int, quantity: int, starts_at: dt.datetime, ends_at: dt.datetime, actor: str
) -> FlashOffer:
    """限时特惠 on an item; windows of one item may not overlap (one price at a time)."""
    if ends_at <= starts_at:
        raise ValidationFailed(fields={"ends_at": [_l("The end must come after the start.")]})
    overlapping = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(FlashOffer)
        .where(FlashOffer.item_id == item.id, FlashOffer.starts_at < ends_at, FlashOffer.ends_at > starts_at)
    )
    if overlapping:
        raise ValidationFailed(fields={"starts_at": [_l("Another flash offer of this item overlaps this window.")]})
    offer = FlashOffer(
        item_id=item.id,
        points_price=points_price,
        quantity=quantity,
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=actor,
    )
    db.session.add(offer)
    db.session.flush()
    audit.record(
        actor=_actor(actor),
        action="mall.flash_offer_created",
        subject=("mall_item", item.id),
        details={"offer": offer.id, "points_price": points_price, "quantity": quantity},
    )
    return offer


def redemption_context(
    code: str, member_id: int, request_id: str, now: dt.datetime
) -> tuple[MallItem, FlashOffer | None, RedemptionOrder | None] | None:
    """One statement for the redemption hot path: the item, its flash offer now (in its window,
    units left) and the member's order under this request id (a resend); None for an unknown code.
    Flash windows of one item never overlap, so there is one row at most."""
    params = {"code": code, "member_id": member_id, "request_id": request_id, "now": now}
    if db.dialect != "postgresql":
        row = db.session.execute(_REDEMPTION_CONTEXT, params).first()
        return None if row is None else (row[0], row[1], row[2])
    # straight to the session's psycopg connection (SQLAlchemy's ORM execution and loading were
    # most of this step's CPU); the rows are adopted as the ORM would have loaded them
    raw = driver_execute(_redemption_context_sql(), params).fetchone()
    if raw is None:
        return None
    found: list[Any] = []
    at = 0
    for model, columns in _CONTEXT_COLUMNS:
        values = {}
        for key, result_value in columns:
            value = raw[at]
            values[key] = value if result_value is None or value is None else result_value(value, _PG)
            at += 1
        found.append(None if values["id"] is None else adopt_loaded(model, values))
    return found[0], found[1], found[2]


#: Built once (its construction cost more CPU than running it); the values are bound per call.
_REDEMPTION_CONTEXT = (
    sa.select(MallItem, FlashOffer, RedemptionOrder)
    .outerjoin(
        FlashOffer,
        sa.and_(
            FlashOffer.item_id == MallItem.id,
            FlashOffer.starts_at <= sa.bindparam("now", type_=FlashOffer.starts_at.type),
            FlashOffer.ends_at > sa.bindparam("now", type_=FlashOffer.ends_at.type),
            FlashOffer.sold < FlashOffer.quantity,
        ),
    )
    .outerjoin(
        RedemptionOrder,
        sa.and_(
            RedemptionOrder.member_id == sa.bindparam("member_id", type_=RedemptionOrder.member_id.type),
            RedemptionOrder.request_id == sa.bindparam("request_id", type_=RedemptionOrder.request_id.type),
        ),
    )
    .where(MallItem.code == sa.bindparam("code", type_=MallItem.code.type))
)


#: The same lookup as columns for the driver: per entity, each column attribute's key and what its
#: type does to a value read back (``UTCDateTime``: aware UTC; ``EncryptedText``: decrypt), if anything.
_CONTEXT_COLUMNS = [
    (
        model,
        [
            (
                attr.key,
                attr.columns[0].type.process_result_value
                if isinstance(attr.columns[0].type, sa.TypeDecorator)
                else None,
            )
            for attr in sa.inspect(model).column_attrs
        ],
    )
    for model in (MallItem, FlashOffer, RedemptionOrder)
]
_PG = postgresql.psycopg.dialect()


@functools.cache
def _redemption_context_sql() -> str:
    columns = [getattr(model, key) for model, keyed in _CONTEXT_COLUMNS for key, _ in keyed]
    plain = _REDEMPTION_CONTEXT.with_only_columns(*columns, maintain_column_froms=False)
    return str(plain.compile(dialect=_PG))


def flash_offer_now(item_id: int, now: dt.datetime) -> FlashOffer | None:
    """The flash offer in its window with units left, if any."""
    return db.session.scalar(
        sa.select(FlashOffer).where(
            FlashOffer.item_id == item_id,
            FlashOffer.starts_at <= now,
            FlashOffer.ends_at > now,
            FlashOffer.sold < FlashOffer.quantity,
        )
    )


def is_open(item: MallItem, now: dt.datetime) -> bool:
    return (
        item.active
        and (item.active_from is None or item.active_from <= now)
        and (item.active_to is None or now < item.active_to)
    )


def tier_allowed(item: MallItem, tier: str) -> bool:
    return not item.eligible_tiers or tier in item.eligible_tiers


def month_start(now: dt.datetime) -> dt.datetime:
    """The start (UTC) of the business month (Asia/Shanghai) holding ``now``."""
    return business_day_start(to_business(now).date().replace(day=1))


def units_redeemed(member_id: int, item_id: int, since: dt.datetime | None = None) -> int:
    query = sa.select(sa.func.coalesce(sa.func.sum(RedemptionOrder.quantity), 0)).where(
        RedemptionOrder.member_id == member_id,
        RedemptionOrder.item_id == item_id,
        RedemptionOrder.status.in_(COUNTED_STATUSES),
    )
    if since is not None:
        query = query.where(RedemptionOrder.created_at >= since)
    return int(db.session.scalar(query) or 0)


@dataclass(frozen=True)
class Limits:
    """What the member may still redeem of an item: ``None`` means no limit of that kind."""

    per_order: int | None
    this_month: int | None
    lifetime: int | None

    @property
    def most(self) -> int | None:
        bounds = [b for b in (self.per_order, self.this_month, self.lifetime) if b is not None]
        return min(bounds) if bounds else None


def limits_left(member_id: int, item: MallItem, now: dt.datetime, *, exclude_order: int | None = None) -> Limits:
    def used(since: dt.datetime | None) -> int:
        total = units_redeemed(member_id, item.id, since)
        if exclude_order is not None:
            own = db.session.get(RedemptionOrder, exclude_order)
            if own is not None and own.status in COUNTED_STATUSES and (since is None or own.created_at >= since):
                total -= own.quantity
        return total

    month = None if item.per_month_limit is None else max(0, item.per_month_limit - used(month_start(now)))
    lifetime = None if item.lifetime_limit is None else max(0, item.lifetime_limit - used(None))
    return Limits(item.per_order_limit, month, lifetime)


@dataclass(frozen=True)
class Offer:
    """An item as one member sees it now: the price (a flash offer's when on), whether they may
    redeem and how many, and why not."""

    item: MallItem
    flash: FlashOffer | None
    unit_points: int
    limits: Limits
    affordable_units: int
    reason: str | None

    @property
    def redeemable(self) -> bool:
        return self.reason is None


def offer(
    item: MallItem,
    member_id: int,
    tier: str,
    available: int,
    now: dt.datetime,
    *,
    flash: FlashOffer | EllipsisType | None = ...,
) -> Offer:
    """``flash``: the item's flash offer now, when the caller already looked it up."""
    flash = flash_offer_now(item.id, now) if isinstance(flash, EllipsisType) else flash
    unit = flash.points_price if flash else item.points_price
    limits = limits_left(member_id, item, now)
    reason = None
    if not is_open(item, now):
        reason = "not_open"
    elif not tier_allowed(item, tier):
        reason = "tier_not_eligible"
    elif item.stock <= 0:
        reason = "out_of_stock"
    elif limits.most == 0:
        reason = "limit_reached"
    elif available < unit:
        reason = "not_enough_points"
    return Offer(item, flash, unit, limits, available // unit, reason)


def offers(member_id: int, tier: str, available: int, now: dt.datetime | None = None) -> list[Offer]:
    """Every open item the member's tier may see, in display order."""
    now = now or utcnow()
    items = db.session.scalars(sa.select(MallItem).where(MallItem.active.is_(True)).order_by(MallItem.points_price))
    return [offer(i, member_id, tier, available, now) for i in items if is_open(i, now) and tier_allowed(i, tier)]
