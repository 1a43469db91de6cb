"""Redemption orders: spend the points and take the stock in one transaction, exactly once.

``redeem`` inserts the order first (unique on member and request id: a resend, even a concurrent
one, returns the first order), locks the member's point account (limits per month and lifetime are
counted behind it), spends through the ledger under the order's own key, then takes stock (and a
flash offer's unit) by conditional UPDATEs. Any refusal raises and the edge rolls everything back.
Lock order: order row, point account, item row, flash offer row — cancel and fulfilment follow it.

Vouchers (coupon, service voucher) are issued at once, partner codes handed out at once, a
donation is complete at once; physical goods wait for the fulfilment operator to ship them.
Cancelling before fulfilment refunds the points into the lots the order drained (with their own
expiry: ``ledger.refund``) and returns the stock; a paid points + cash order also gets its cash
refunded through WeChat Pay after the commit. Points + cash orders wait in ``awaiting_payment``
(points spent, stock reserved) until paid or closed: ``app.mall.settling``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from app.core import audit
from app.core.clock import utcnow
from app.core.db import db, driver_execute, insert_if_absent
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.i18n import _l
from app.core.security import cipher
from app.mall import catalog, payments, vouchers
from app.mall.catalog import ItemUnavailable
from app.mall.models import OWN_VOUCHER_KINDS, VOUCHER_KINDS, FlashOffer, MallItem, RedemptionOrder, Voucher
from app.members.models import Member
from app.members.sessions import MemberRef
from app.points import ledger
from app.tiers.policy import current_tier


class OutOfStock(Conflict):
    code = "out_of_stock"
    default_message = _l("This item is out of stock.")


class FlashOfferSoldOut(Conflict):
    code = "flash_offer_sold_out"
    default_message = _l("The flash offer has just sold out; the item is back at its usual price.")


class LimitReached(Conflict):
    code = "limit_reached"
    default_message = _l("You have reached the limit for this item.")


class OrderClosed(Conflict):
    code = "order_closed"
    default_message = _l("This order can no longer be changed.")


class RequestIdReused(Conflict):
    code = "request_id_reused"
    default_message = _l("This request id was already used for a different redemption.")


@dataclass(frozen=True)
class Redeemed:
    order: RedemptionOrder
    new: bool


def spend_key(order_id: int) -> str:
    return f"mall:order:{order_id}"


def find(member_id: int, request_id: str) -> RedemptionOrder | None:
    return db.session.scalar(
        sa.select(RedemptionOrder).where(
            RedemptionOrder.member_id == member_id, RedemptionOrder.request_id == request_id
        )
    )


def _same_request(existing: RedemptionOrder, item_code: str, quantity: int) -> RedemptionOrder:
    if existing.item.code != item_code or existing.quantity != quantity:
        raise RequestIdReused()
    return existing


def _locked(order_id: int) -> RedemptionOrder | None:
    return db.session.scalar(
        sa.select(RedemptionOrder)
        .where(RedemptionOrder.id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def get_for_member(member_id: int, order_id: int, *, lock: bool = False) -> RedemptionOrder:
    order = _locked(order_id) if lock else db.session.get(RedemptionOrder, order_id)
    if order is None or order.member_id != member_id:
        raise NotFound()
    return order


def for_member(member_id: int, limit: int = 50) -> list[RedemptionOrder]:
    return list(
        db.session.scalars(
            sa.select(RedemptionOrder)
            .where(RedemptionOrder.member_id == member_id)
            .order_by(RedemptionOrder.created_at.desc(), RedemptionOrder.id.desc())
            .limit(limit)
        )
    )


def history(member_id: int, *, page: int, per_page: int) -> tuple[list[RedemptionOrder], int]:
    """The member's redemption orders, newest first, with their items and vouchers (the member 360)."""
    query = sa.select(RedemptionOrder).where(RedemptionOrder.member_id == member_id)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = db.session.scalars(
        query.options(sa.orm.selectinload(RedemptionOrder.item), sa.orm.selectinload(RedemptionOrder.vouchers))
        .order_by(RedemptionOrder.created_at.desc(), RedemptionOrder.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return list(rows), total


def _check(member: Member | MemberRef, item: MallItem, quantity: int, address: str | None, now: dt.datetime) -> None:
    if not catalog.is_open(item, now):
        raise ItemUnavailable()
    if item.eligible_tiers and not catalog.tier_allowed(item, current_tier(member.id)):
        raise ItemUnavailable(_l("Your tier cannot redeem this item."), details={"reason": "tier_not_eligible"})
    if item.per_order_limit is not None and quantity > item.per_order_limit:
        raise ValidationFailed(fields={"quantity": [_l("At most %(limit)s per order.", limit=item.per_order_limit)]})
    if item.kind == "physical" and not (address or "").strip():
        raise ValidationFailed(fields={"address": [_l("Give the address to ship this item to.")]})


def _status_at_once(item: MallItem) -> str:
    """Vouchers and partner codes are issued with the order, a donation is done; goods wait."""
    if item.kind in VOUCHER_KINDS:
        return "fulfilled"
    return "completed" if item.kind == "charity" else "created"


def redeem(
    member: Member | MemberRef,
    *,
    item_code: str,
    quantity: int,
    request_id: str,
    address: str | None = None,
    payer_openid: str | None = None,
) -> Redeemed:
    """Redeem once per ``request_id``: points spent, stock taken and the order made, or nothing.

    A points + cash item opens its WeChat Pay order first (``payments.open_order``, no lock held:
    the call never keeps the item row locked), then everything below happens in the transaction,
    the order ``awaiting_payment`` until WeChat says it is paid (``settling.settle``)."""
    now = utcnow()
    found = catalog.redemption_context(item_code, member.id, request_id, now)
    if found is None:
        if (existing := find(member.id, request_id)) is not None:
            return Redeemed(_same_request(existing, item_code, quantity), False)
        raise ValidationFailed(fields={"item": [_l("Unknown item.")]})
    item, flash, existing = found
    if existing is not None:
        if existing.item_id != item.id or existing.quantity != quantity:
            raise RequestIdReused()
        set_committed_value(existing, "item", item)
        return Redeemed(existing, False)
    _check(member, item, quantity, address, now)
    unit = flash.points_price if flash else item.points_price
    cash = item.cash_fen * quantity
    status = "awaiting_payment" if cash else _status_at_once(item)
    if cash:
        if not payer_openid:
            raise ValidationFailed(fields={"item": [_l("Points plus cash is paid in the mini-app.")]})
        payment = payments.open_order(
            member_id=member.id,
            openid=payer_openid,
            request_id=request_id,
            item=item,
            quantity=quantity,
            amount_fen=cash,
            now=now,
        )
    # written as it will be if every step below succeeds; any refusal rolls the row back with the rest
    values = {
        "member_id": member.id,
        "request_id": request_id,
        "item_id": item.id,
        "flash_offer_id": flash.id if flash else None,
        "quantity": quantity,
        "unit_points": unit,
        "points_spent": unit * quantity,
        "cash_fen": cash,
        "cost_fen": item.cost_fen * quantity,
        "status": status,
        "address": address if item.kind == "physical" else None,
        "created_at": now,
        "fulfilled_at": now if status in ("fulfilled", "completed") else None,
        "fulfilled_by": "system" if status in ("fulfilled", "completed") else None,
        "completed_at": now if status == "completed" else None,
    }
    order_id = _insert_order(values)
    if order_id is None:  # a concurrent twin with this request id committed first
        twin = find(member.id, request_id)
        assert twin is not None
        return Redeemed(_same_request(twin, item_code, quantity), False)
    order = _known_row(order_id, values)
    if item.per_month_limit is not None or item.lifetime_limit is not None:
        ledger.lock_account(member.id)  # the member's redemptions queue here: limits are counted once
        limits = catalog.limits_left(member.id, item, now, exclude_order=order.id)
        if limits.most is not None and quantity > limits.most:
            raise LimitReached(details={"left": limits.most})
    ledger.spend(
        member.id,
        unit * quantity,
        idempotency_key=spend_key(order.id),
        source_type="mall_order",
        source_ref=str(order.id),
        note=item.code,
    )
    issued = _take_stock_and_issue(order, item, flash, now)
    set_committed_value(order, "vouchers", issued)
    set_committed_value(order, "item", item)
    if cash:
        payments.record(order, *payment)
    return Redeemed(order, True)


_ORDER_COLUMNS = (
    "member_id",
    "request_id",
    "item_id",
    "flash_offer_id",
    "quantity",
    "unit_points",
    "points_spent",
    "cash_fen",
    "cost_fen",
    "status",
    "address",
    "created_at",
    "fulfilled_at",
    "fulfilled_by",
    "completed_at",
)
_INSERT_ORDER = (
    f"INSERT INTO mall_orders ({', '.join(_ORDER_COLUMNS)}) "  # noqa: S608 - fixed column names
    f"VALUES ({', '.join(f'%({c})s' for c in _ORDER_COLUMNS)}) "
    "ON CONFLICT (member_id, request_id) DO NOTHING RETURNING id"
)


def _insert_order(values: dict[str, object]) -> int | None:
    """The new order's id, or None if the member's request id is taken (the unique constraint
    decides). On PostgreSQL straight to the session's psycopg connection (the redemption's hot
    path, like the ledger's spend); elsewhere ``insert_if_absent``."""
    if db.dialect != "postgresql":
        return insert_if_absent(RedemptionOrder, values, ("member_id", "request_id"))
    params = dict(values)
    if params["address"] is not None:  # the column is ``EncryptedText``: what its type would write
        params["address"] = cipher().encrypt(str(params["address"]))
    db.session.flush()  # ORM changes must reach the database before raw statements run
    row = driver_execute(_INSERT_ORDER, params).fetchone()
    return None if row is None else row[0]


def _take_stock_and_issue(
    order: RedemptionOrder, item: MallItem, flash: FlashOffer | None, now: dt.datetime
) -> list[Voucher]:
    """The units from the item's stock (and the flash offer's), then the vouchers if the order is
    fulfilled at once. Our own codes without a flash offer: stock and vouchers in one statement."""
    quantity = order.quantity
    if flash is None and order.status == "fulfilled" and item.kind in OWN_VOUCHER_KINDS and db.dialect == "postgresql":
        issued = vouchers.take_stock_and_issue(order, item, now)
        if issued is None:
            raise OutOfStock()
        return issued
    _take_stock(item.id, quantity)
    if flash is not None:
        _take_flash_units(flash.id, quantity, now)
    return vouchers.issue(order, item, now) if order.status == "fulfilled" and item.kind in VOUCHER_KINDS else []


def _known_row(order_id: int, values: dict[str, object]) -> RedemptionOrder:
    """The order just inserted, as the ORM's persistent row without reading it back: every column
    is known (the INSERT wrote them), so nothing is loaded lazily afterwards."""
    order = RedemptionOrder(id=order_id, tracking_number=None, cancelled_at=None, cancelled_by=None, **values)
    make_transient_to_detached(order)
    db.session.add(order)
    return order


def payment_received(order: RedemptionOrder) -> RedemptionOrder:
    """A locked order awaiting payment was paid: on to what a points-only order is at once."""
    now = utcnow()
    item = order.item
    order.status = _status_at_once(item)
    if order.status in ("fulfilled", "completed"):
        order.fulfilled_at, order.fulfilled_by = now, "system"
    if order.status == "completed":
        order.completed_at = now
    db.session.flush()
    if order.status == "fulfilled" and item.kind in VOUCHER_KINDS:
        vouchers.issue(order, item, now)
    return order


def give_up_unpaid(order: RedemptionOrder, actor: str) -> RedemptionOrder:
    """A locked order whose payment was closed unpaid: points into their lots, stock back."""
    if order.status != "awaiting_payment":
        raise OrderClosed()
    _give_back(order)
    order.status, order.cancelled_at, order.cancelled_by = "cancelled", utcnow(), actor
    db.session.flush()
    return order


def _take_stock(item_id: int, quantity: int) -> None:
    taken = db.session.execute(
        sa.update(MallItem)
        .where(MallItem.id == item_id, MallItem.stock >= quantity)
        .values(stock=MallItem.stock - quantity)
        .returning(MallItem.stock),
        execution_options={"synchronize_session": False},  # nothing here reads the item's stock again
    ).scalar_one_or_none()
    if taken is None:
        raise OutOfStock()


def _take_flash_units(offer_id: int, quantity: int, now: dt.datetime) -> None:
    taken = db.session.execute(
        sa.update(FlashOffer)
        .where(FlashOffer.id == offer_id, FlashOffer.sold + quantity <= FlashOffer.quantity, FlashOffer.ends_at > now)
        .values(sold=FlashOffer.sold + quantity)
        .returning(FlashOffer.sold),
        execution_options={"synchronize_session": False},
    ).scalar_one_or_none()
    if taken is None:
        raise FlashOfferSoldOut()


def _give_back(order: RedemptionOrder) -> None:
    spent = ledger.find_entry(spend_key(order.id), order.member_id, "spend")
    if spent is not None and order.points_spent:
        ledger.refund(  # back into the lots the order drained, with their own expiry
            spent,
            order.points_spent,
            idempotency_key=f"mall:refund:{order.id}",
            source_type="mall_order",
            source_ref=str(order.id),
            reason_code="mall_cancelled",
        )
    db.session.execute(
        sa.update(MallItem).where(MallItem.id == order.item_id).values(stock=MallItem.stock + order.quantity)
    )
    if order.flash_offer_id is not None:  # the unit goes back to the offer it came from
        db.session.execute(
            sa.update(FlashOffer)
            .where(FlashOffer.id == order.flash_offer_id)
            .values(sold=FlashOffer.sold - order.quantity)
        )


def _cancel_locked(order: RedemptionOrder, actor: str) -> RedemptionOrder:
    if order.status != "created":
        raise OrderClosed()
    _give_back(order)
    order.status, order.cancelled_at, order.cancelled_by = "cancelled", utcnow(), actor
    if order.cash_fen:
        payments.refund_after_cancel(order)  # the cash goes back through WeChat Pay after the commit
    db.session.flush()
    return order


def cancel(member: Member, order_id: int) -> RedemptionOrder:
    """The member cancels before fulfilment: points back into their lots, stock returned."""
    return _cancel_locked(get_for_member(member.id, order_id, lock=True), f"member:{member.id}")


def locked_order(order_id: int) -> RedemptionOrder:
    order = _locked(order_id)
    if order is None:
        raise NotFound()
    return order


def cancel_by_operator(order_id: int, *, actor: str, reason: str) -> RedemptionOrder:
    order = _cancel_locked(locked_order(order_id), actor)
    audit.record(
        actor=("operator", actor), action="mall.order_cancelled", subject=("mall_order", order.id), reason=reason
    )
    return order


def ship(order_id: int, *, tracking_number: str, actor: str) -> RedemptionOrder:
    """The fulfilment operator ships a physical order (created → fulfilled), once."""
    order = locked_order(order_id)
    if order.status != "created" or order.item.kind != "physical":
        raise OrderClosed()
    order.status, order.fulfilled_at, order.fulfilled_by = "fulfilled", utcnow(), actor
    order.tracking_number = tracking_number
    db.session.flush()
    audit.record(
        actor=("operator", actor),
        action="mall.order_shipped",
        subject=("mall_order", order.id),
        details={"tracking_number": tracking_number},
    )
    return order


def complete(order_id: int, *, actor: str) -> RedemptionOrder:
    """A shipped order was delivered (fulfilled → completed)."""
    order = locked_order(order_id)
    if order.status != "fulfilled" or order.item.kind != "physical":
        raise OrderClosed()
    order.status, order.completed_at = "completed", utcnow()
    db.session.flush()
    audit.record(actor=("operator", actor), action="mall.order_completed", subject=("mall_order", order.id))
    return order


def awaiting_fulfilment(limit: int = 200) -> list[RedemptionOrder]:
    return list(
        db.session.scalars(
            sa.select(RedemptionOrder)
            .join(MallItem, MallItem.id == RedemptionOrder.item_id)
            .where(RedemptionOrder.status == "created", MallItem.kind == "physical")
            .order_by(RedemptionOrder.id)
            .limit(limit)
        )
    )


def erase_addresses(member_id: int) -> int:
    """Withdrawal: the member's delivery addresses go (orders, points and stock stay)."""
    result = db.session.execute(
        sa.update(RedemptionOrder)
        .where(RedemptionOrder.member_id == member_id, RedemptionOrder.address.is_not(None))
        .values(address=None)
    )
    return result.rowcount or 0
