"""Redemption exactly once under concurrency, on PostgreSQL with real commits: stock never
oversold, a member's points never spent twice, one order per request id, a flash offer's quantity
never exceeded, one outcome for a cancel racing the shipment, a voucher scanned twice used once."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from app.core.audit import AuditEntry
from app.core.clock import utcnow
from app.core.db import db
from app.dealers.models import Staff
from app.mall import catalog, ordering, vouchers
from app.mall.models import FlashOffer, MallItem, RedemptionOrder, Voucher
from app.members.models import Member
from app.points import queries
from app.points.models import PointEntry
from tests import factories
from tests.benefit_helpers import give_points
from tests.conftest import run_concurrently
from tests.mall_helpers import item

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def in_own_context(app, fn):
    """Run ``fn`` as one unit of work of its own (app context, session, commit or roll back)."""
    with app.app_context():
        try:
            result = fn()
            db.session.commit()
            return result
        except Exception as exc:
            db.session.rollback()
            return exc


def setup(app, *, members: int, points: int, stock: int, price: int, kind: str = "coupon", code: str = "hot"):
    with app.app_context():
        rows = [factories.member() for _ in range(members)]
        for row in rows:
            give_points(row, points)
        item(kind, points=price, stock=stock, code=code)
        db.session.commit()
        return [r.id for r in rows]


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def redeem_as(app, member_id: int, request_id: str, code: str = "hot", **kwargs):
    def redeem():
        member = db.session.get(Member, member_id)
        return ordering.redeem(member, item_code=code, quantity=1, request_id=request_id, **kwargs)

    return in_own_context(app, redeem)


def test_300_redemptions_of_an_item_with_stock_50_make_exactly_50(app):
    member_ids = setup(app, members=60, points=10_000, stock=50, price=100)

    def attempt(i: int):
        return redeem_as(app, member_ids[i % len(member_ids)], f"hot-{i:06d}")

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(attempt, range(300)))
    kinds = Counter(type(o).__name__ for o in outcomes)
    assert kinds == {"Redeemed": 50, "OutOfStock": 250}, kinds
    with app.app_context():
        assert catalog.item_by_code("hot").stock == 0
        spent = db.session.scalar(sa.select(sa.func.sum(PointEntry.points)).where(PointEntry.kind == "spend"))
        assert spent == -50 * 100  # the refused ones spent nothing
    assert count(app, RedemptionOrder) == 50
    assert count(app, Voucher) == 50


def test_one_member_with_1000_points_racing_5_redemptions_of_400_gets_exactly_2(app):
    [member_id] = setup(app, members=1, points=1000, stock=100, price=400)
    outcomes = run_concurrently(5, lambda i: redeem_as(app, member_id, f"race-{i:04d}"))
    assert Counter(type(o).__name__ for o in outcomes) == {"Redeemed": 2, "InsufficientPoints": 3}, outcomes
    with app.app_context():
        assert queries.balance(member_id).available == 200
        assert catalog.item_by_code("hot").stock == 98
    assert count(app, RedemptionOrder) == 2


def test_the_same_request_id_from_ten_threads_makes_one_order(app):
    [member_id] = setup(app, members=1, points=5000, stock=100, price=300)
    outcomes = run_concurrently(10, lambda i: redeem_as(app, member_id, "same-request-1"))
    assert all(type(o).__name__ == "Redeemed" for o in outcomes), outcomes
    assert len({o.order.id for o in outcomes}) == 1 and sum(o.new for o in outcomes) == 1
    assert count(app, RedemptionOrder) == 1
    with app.app_context():
        assert queries.balance(member_id).available == 4700
        assert catalog.item_by_code("hot").stock == 99


def test_a_flash_offers_quantity_is_never_exceeded(app):
    member_ids = setup(app, members=40, points=10_000, stock=1000, price=500)
    with app.app_context():
        now = utcnow()
        catalog.add_flash_offer(
            catalog.item_by_code("hot"),
            points_price=100,
            quantity=10,
            starts_at=now - dt.timedelta(minutes=1),
            ends_at=now + dt.timedelta(hours=1),
            actor="cli:test",
        )
        db.session.commit()

    def attempt(i: int):
        return redeem_as(app, member_ids[i % len(member_ids)], f"flash-{i:05d}")

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(attempt, range(120)))
    redeemed = [o for o in outcomes if type(o).__name__ == "Redeemed"]
    refused = Counter(type(o).__name__ for o in outcomes if type(o).__name__ != "Redeemed")
    assert set(refused) <= {"FlashOfferSoldOut"}, refused
    at_flash_price = [o for o in redeemed if o.order.unit_points == 100]
    assert len(at_flash_price) == 10
    with app.app_context():
        offer = db.session.scalar(sa.select(FlashOffer))
        assert offer.sold == 10
        stock = catalog.item_by_code("hot").stock
        flash_orders = db.session.scalar(sa.select(sa.func.count()).where(RedemptionOrder.flash_offer_id == offer.id))
        assert flash_orders == 10 and stock == 1000 - len(redeemed)


def test_a_cancel_racing_the_shipment_has_one_outcome(app):
    member_ids = setup(app, members=6, points=1000, stock=20, price=300, kind="physical", code="box")
    orders = []
    for member_id in member_ids:
        result = redeem_as(app, member_id, f"box-{member_id}", code="box", address="上海市 1 号")
        orders.append((member_id, result.order.id))

    for member_id, order_id in orders:

        def race(i: int, member_id=member_id, order_id=order_id):
            def cancel():
                return ordering.cancel(db.session.get(Member, member_id), order_id).status

            def ship():
                return ordering.ship(order_id, tracking_number=f"SF{order_id}", actor="ops").status

            return in_own_context(app, cancel if i == 0 else ship)

        outcomes = run_concurrently(2, race)
        winners = [o for o in outcomes if isinstance(o, str)]
        losers = [o for o in outcomes if isinstance(o, ordering.OrderClosed)]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        with app.app_context():
            order = db.session.get(RedemptionOrder, order_id)
            refunds = db.session.scalar(
                sa.select(sa.func.count()).where(PointEntry.kind == "refund", PointEntry.source_ref == str(order_id))
            )
            balance = queries.balance(member_id).available
            if order.status == "fulfilled":
                assert (refunds, balance, order.cancelled_at) == (0, 700, None)
            else:
                assert (order.status, refunds, balance, order.tracking_number) == ("cancelled", 1, 1000, None)
    with app.app_context():
        cancelled = db.session.scalar(sa.select(sa.func.count()).where(RedemptionOrder.status == "cancelled"))
        assert db.session.scalar(sa.select(MallItem.stock)) == 20 - 6 + cancelled


def test_a_voucher_scanned_twice_at_once_is_used_once(app):
    member_ids = setup(app, members=5, points=1000, stock=10, price=100, kind="service_voucher", code="wash")
    with app.app_context():
        dealer = factories.dealer(code="D0901")
        staff_ids = [factories.staff(dealer, role="service_advisor").id for _ in range(2)]
        db.session.commit()
    for member_id in member_ids:
        order = redeem_as(app, member_id, f"wash-{member_id}", code="wash").order
        with app.app_context():
            code = db.session.scalar(sa.select(Voucher.code).where(Voucher.order_id == order.id))

        def scan(i: int, code=code):
            return in_own_context(app, lambda: vouchers.consume(db.session.get(Staff, staff_ids[i]), code).status)

        outcomes = run_concurrently(2, scan)
        assert sorted(type(o).__name__ for o in outcomes) == ["VoucherUsed", "str"], outcomes
    assert count(app, Voucher, Voucher.status == "used") == 5
    assert count(app, AuditEntry, AuditEntry.action == "mall.voucher_used") == 5
    assert count(app, RedemptionOrder, RedemptionOrder.status == "completed") == 5
