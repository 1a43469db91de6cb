"""Points mall (SPEC §6): redeeming (points and stock together, once per request id), limits,
tiers, flash offers, vouchers scanned once, cancel before fulfilment, the expiry rule, addresses at
rest, and the mini-app and back-office APIs."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.core.audit import AuditEntry
from app.core.clock import to_business, utcnow
from app.core.db import db
from app.core.errors import NotFound, ValidationFailed
from app.mall import catalog, ordering, recommendations, vouchers
from app.mall.catalog import ItemUnavailable
from app.mall.models import FlashOffer, MallItem, RedemptionOrder, Voucher
from app.members import privacy
from app.points import ledger, queries
from app.points.ledger import InsufficientPoints
from app.points.models import PointLot
from tests import factories
from tests.benefit_helpers import give_points, set_tier
from tests.mall_helpers import item


@pytest.fixture
def member(app_ctx):
    row = factories.member()
    give_points(row, 1000)
    return row


def redeem(member, code, request_id=None, quantity=1, **kwargs):
    """Redeem as the edge does: a refusal rolls back what the attempt wrote (here, its savepoint)."""
    savepoint = db.session.begin_nested()
    try:
        result = ordering.redeem(
            member, item_code=code, quantity=quantity, request_id=request_id or f"req-{utcnow().timestamp()}", **kwargs
        )
    except Exception:
        savepoint.rollback()
        raise
    savepoint.commit()
    return result


def available(member) -> int:
    return queries.balance(member.id).available


def stock_of(code) -> int:
    row = catalog.item_by_code(code)
    db.session.refresh(row)
    return row.stock


# --- redeeming ------------------------------------------------------------------------------------


def test_redeeming_a_coupon_spends_points_takes_stock_and_issues_a_voucher(member):
    coupon = item("coupon", points=400, stock=5, code="labour200")
    result = redeem(member, "labour200", "req-coupon-1", quantity=2)
    order = result.order
    assert result.new and order.status == "fulfilled" and order.points_spent == 800
    assert available(member) == 200 and stock_of("labour200") == 3
    assert len(order.vouchers) == 2 and all(v.code.startswith("MV.") for v in order.vouchers)
    assert order.vouchers[0].expires_at > utcnow() + dt.timedelta(days=coupon.voucher_valid_days - 1)
    spend = ledger.find_entry(ordering.spend_key(order.id), member.id, "spend")
    assert spend.points == -800 and spend.source_type == "mall_order"


def test_a_resend_with_the_same_request_id_returns_the_first_order(member):
    item("coupon", points=300, code="c300")
    first = redeem(member, "c300", "req-same-01")
    again = redeem(member, "c300", "req-same-01")
    assert not again.new and again.order.id == first.order.id
    assert available(member) == 700 and stock_of("c300") == 49
    item("coupon", points=10, code="c010")
    with pytest.raises(ordering.RequestIdReused):
        redeem(member, "c010", "req-same-01")


def test_not_enough_points_refuses_and_an_unknown_item_is_a_field_error(member):
    item("coupon", points=1200, code="dear")
    with pytest.raises(InsufficientPoints):
        redeem(member, "dear")
    with pytest.raises(ValidationFailed) as err:
        redeem(member, "nosuch")
    assert "item" in err.value.fields


def test_out_of_stock_refuses(member):
    item("coupon", points=100, stock=1, code="last1")
    redeem(member, "last1")
    with pytest.raises(ordering.OutOfStock):
        redeem(member, "last1")


def test_limits_per_order_per_month_and_lifetime(member, time_machine):
    item("coupon", points=10, code="lim", per_order_limit=2, per_month_limit=3, lifetime_limit=4)
    with pytest.raises(ValidationFailed) as err:
        redeem(member, "lim", quantity=3)
    assert "quantity" in err.value.fields
    redeem(member, "lim", "lim-req-01", quantity=2)
    offer = catalog.offer(catalog.item_by_code("lim"), member.id, "silver", available(member), utcnow())
    assert (offer.limits.per_order, offer.limits.this_month, offer.limits.lifetime) == (2, 1, 2)
    with pytest.raises(ordering.LimitReached):
        redeem(member, "lim", "lim-req-02", quantity=2)
    redeem(member, "lim", "lim-req-03")
    time_machine.move_to(utcnow() + dt.timedelta(days=32))
    with pytest.raises(ordering.LimitReached):  # a new month, but only one left for life
        redeem(member, "lim", "lim-req-04", quantity=2)
    assert redeem(member, "lim", "lim-req-05").new


def test_a_cancelled_order_does_not_count_against_the_limits(member):
    item("physical", points=100, code="mug", lifetime_limit=1)
    order = redeem(member, "mug", "mug-req-01", address="上海市 1 号").order
    ordering.cancel(member, order.id)
    assert redeem(member, "mug", "mug-req-02", address="上海市 1 号").new


def test_tier_restrictions_and_the_active_window(member):
    item("coupon", points=100, code="goldonly", eligible_tiers=["gold", "platinum", "diamond"])
    with pytest.raises(ItemUnavailable):
        redeem(member, "goldonly")
    set_tier(member, "gold")
    assert redeem(member, "goldonly").new
    item("coupon", points=100, code="later", active_from=utcnow() + dt.timedelta(days=1))
    with pytest.raises(ItemUnavailable):
        redeem(member, "later")


def test_a_flash_offer_sells_its_quantity_at_its_price_then_the_usual_price_returns(member):
    coupon = item("coupon", points=300, code="flashy")
    catalog.add_flash_offer(
        coupon, points_price=100, quantity=2, starts_at=utcnow() - dt.timedelta(minutes=1),
        ends_at=utcnow() + dt.timedelta(hours=1), actor="cli:test",
    )  # fmt: skip
    first = redeem(member, "flashy", "flash-01", quantity=2).order
    assert first.unit_points == 100 and first.flash_offer_id is not None
    then = redeem(member, "flashy", "flash-02").order
    assert then.unit_points == 300 and then.flash_offer_id is None
    assert db.session.get(FlashOffer, first.flash_offer_id).sold == 2


def test_flash_windows_of_one_item_do_not_overlap(member):
    coupon = item("coupon", code="overlap")
    start = utcnow()
    catalog.add_flash_offer(
        coupon, points_price=1, quantity=1, starts_at=start, ends_at=start + dt.timedelta(hours=2), actor="t"
    )
    with pytest.raises(ValidationFailed):
        catalog.add_flash_offer(
            coupon, points_price=1, quantity=1, starts_at=start + dt.timedelta(hours=1),
            ends_at=start + dt.timedelta(hours=3), actor="t",
        )  # fmt: skip


def test_a_donation_is_complete_at_once(member):
    item("charity", points=500, code="trees")
    order = redeem(member, "trees").order
    assert order.status == "completed" and order.vouchers == []


# --- cancel and fulfilment --------------------------------------------------------------------------


def test_cancelling_a_physical_order_returns_points_into_their_lots_and_the_stock(member):
    item("physical", points=600, stock=3, code="umbrella")
    lot_expiry = db.session.scalar(sa.select(PointLot.expires_at).where(PointLot.member_id == member.id))
    order = redeem(member, "umbrella", address="北京市朝阳区 8 号").order
    assert order.status == "created" and available(member) == 400 and stock_of("umbrella") == 2
    ordering.cancel(member, order.id)
    assert order.status == "cancelled" and available(member) == 1000 and stock_of("umbrella") == 3
    lots = db.session.scalars(sa.select(PointLot).where(PointLot.member_id == member.id)).all()
    assert [(lot.remaining, lot.expires_at) for lot in lots] == [(1000, lot_expiry)]  # the same lot, its expiry
    with pytest.raises(ordering.OrderClosed):
        ordering.cancel(member, order.id)


def test_a_shipped_order_cannot_be_cancelled_and_completes_on_delivery(member):
    item("physical", points=100, code="cap")
    order = redeem(member, "cap", address="广州市 3 号").order
    ordering.ship(order.id, tracking_number="SF123456", actor="ops")
    assert order.status == "fulfilled" and order.tracking_number == "SF123456"
    with pytest.raises(ordering.OrderClosed):
        ordering.cancel(member, order.id)
    with pytest.raises(ordering.OrderClosed):
        ordering.ship(order.id, tracking_number="SF999", actor="ops")
    assert ordering.complete(order.id, actor="ops").status == "completed"


def test_physical_goods_need_an_address_kept_encrypted_and_erased_on_withdrawal(member):
    item("physical", points=100, code="bag")
    with pytest.raises(ValidationFailed) as err:
        redeem(member, "bag")
    assert "address" in err.value.fields
    order = redeem(member, "bag", address="深圳市南山区科技园 99 号").order
    raw = db.session.execute(sa.text("SELECT address FROM mall_orders WHERE id = :id"), {"id": order.id}).scalar()
    assert raw and "深圳" not in raw
    privacy.withdraw_everything(member)
    db.session.refresh(order)
    assert order.address is None


# --- vouchers ---------------------------------------------------------------------------------------


def test_a_dealer_scan_uses_a_voucher_once_and_audits_it(member):
    item("service_voucher", points=200, code="wash")
    order = redeem(member, "wash").order
    dealer = factories.dealer(code="D0801")
    staff = factories.staff(dealer, code="SA0801", role="service_advisor")
    code = order.vouchers[0].code
    used = vouchers.consume(staff, code)
    assert used.status == "used" and used.used_at_dealer_id == dealer.id and order.status == "completed"
    with pytest.raises(vouchers.VoucherUsed):
        vouchers.consume(staff, code)
    with pytest.raises(NotFound):
        vouchers.consume(staff, "MV.not-a-code")
    actions = db.session.scalars(sa.select(AuditEntry.action).where(AuditEntry.action.like("mall.voucher%"))).all()
    assert sorted(actions) == ["mall.voucher_refused", "mall.voucher_unknown", "mall.voucher_used"]


def test_an_unused_voucher_expires_without_a_refund_and_its_order_expires(member, time_machine):
    item("coupon", points=300, code="old", voucher_valid_days=1)
    order = redeem(member, "old").order
    assert vouchers.expire_due() == 0
    time_machine.move_to(utcnow() + dt.timedelta(days=3))
    assert vouchers.expire_due() == 1
    assert order.vouchers[0].status == "expired" and order.status == "expired"
    assert available(member) == 700 and stock_of("old") == 49  # the rule: no refund, no stock back
    staff = factories.staff(factories.dealer(code="D0802"), role="service_advisor")
    with pytest.raises(vouchers.VoucherExpired):
        vouchers.consume(staff, order.vouchers[0].code)


def test_the_voucher_code_is_not_stored_in_clear(member):
    item("coupon", points=100, code="secret")
    voucher = redeem(member, "secret").order.vouchers[0]
    raw = db.session.execute(
        sa.text("SELECT code, code_hash FROM mall_vouchers WHERE id = :id"), {"id": voucher.id}
    ).one()
    assert voucher.code not in raw.code and voucher.code not in raw.code_hash


def test_a_voucher_png_is_a_qr_image(member):
    item("coupon", points=100, code="qr")
    voucher = redeem(member, "qr").order.vouchers[0]
    assert vouchers.png(voucher).startswith(b"\x89PNG")


# --- recommendations --------------------------------------------------------------------------------


def test_recommendations_spend_the_expiring_points_first_and_say_so(app_ctx, time_machine):
    member = factories.member()
    give_points(member, 2000, key="old")
    lot = db.session.scalar(sa.select(PointLot).where(PointLot.member_id == member.id))
    time_machine.move_to(lot.expires_at - dt.timedelta(days=10))
    give_points(member, 3000, key="new")
    item("coupon", points=500, code="small")
    item("physical", points=1900, code="fits")
    item("physical", points=4000, code="big")
    item("coupon", points=9000, code="toodear")
    picks = recommendations.for_member(member.id)
    assert [p.offer.item.code for p in picks] == ["fits", "small", "big"]
    assert picks[0].reason == "expiring_points"
    assert "2000" in picks[0].message and "商品physical" in picks[0].message


def test_recommendations_without_expiring_points_prefer_kinds_redeemed_before(member):
    item("physical", points=100, code="p1")
    item("coupon", points=300, code="c1")
    redeem(member, "c1")
    picks = recommendations.for_member(member.id)
    assert [p.reason for p in picks][:1] == ["redeemed_before"] and picks[0].offer.item.code == "c1"


# --- items ------------------------------------------------------------------------------------------


def test_items_refuse_unknown_tiers_and_bad_windows(app_ctx):
    with pytest.raises(ValidationFailed) as err:
        item(eligible_tiers=["bronze"], active_from=utcnow(), active_to=utcnow() - dt.timedelta(days=1), cash_fen=100)
    assert set(err.value.fields) == {"eligible_tiers", "active_to"}


def test_stock_changes_are_relative_and_never_below_zero(app_ctx):
    row = item(stock=5, code="rel")
    assert catalog.add_stock(row, 10, actor="t").stock == 15
    with pytest.raises(ValidationFailed):
        catalog.add_stock(row, -16, actor="t")
    assert db.session.get(MallItem, row.id).stock == 15


def test_orders_of_a_member_are_theirs_alone(member):
    item("physical", points=100, code="mine")
    order = redeem(member, "mine", address="x 路 1 号").order
    other = factories.member()
    with pytest.raises(NotFound):
        ordering.cancel(other, order.id)
    assert db.session.get(RedemptionOrder, order.id).status == "created"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Voucher)) == 0


def test_the_expiring_points_reminder_names_the_recommended_item(app_ctx, time_machine):
    from app.care.models import Notification
    from app.care.rendering import RENDERERS

    member = factories.member()
    give_points(member, 2000, key="old")
    lot = db.session.scalar(sa.select(PointLot).where(PointLot.member_id == member.id))
    time_machine.move_to(lot.expires_at - dt.timedelta(days=20))
    last_day = to_business(lot.expires_at - dt.timedelta(microseconds=1)).date()
    reminder = Notification(member_id=member.id, period=f"{last_day}:30d")
    assert (
        RENDERERS["points_expiring"](reminder)["remark"]["value"] == "请在过期前到积分商城或保养时使用。"
    )  # nothing to pick
    item("physical", points=1500, code="fits")
    rendered = RENDERERS["points_expiring"](reminder)
    assert rendered["keyword1"]["value"] == "2,000 积分"
    assert rendered["remark"]["value"] == "请在过期前到积分商城兑换商品physical。"


def test_recommendations_loaded_for_a_batch_are_the_ones_asked_one_by_one(app_ctx, time_machine):
    """The care dispatcher loads the inputs of a batch in a few set queries (``preloaded``): same
    picks, reasons and balances as asking member by member."""
    expiring, redeemer, empty = factories.member(), factories.member(), factories.member()
    give_points(expiring, 2000, key="old")
    lot = db.session.scalar(sa.select(PointLot).where(PointLot.member_id == expiring.id))
    time_machine.move_to(lot.expires_at - dt.timedelta(days=10))
    give_points(expiring, 3000, key="new")
    give_points(redeemer, 800, key="r")
    item("coupon", points=500, code="small")
    item("physical", points=1900, code="fits")
    item("coupon", points=300, code="c1")
    redeem(redeemer, "c1")
    members = [expiring.id, redeemer.id, empty.id]

    def picks() -> dict[int, list[tuple[str, str, str]]]:
        return {
            member_id: [(p.offer.item.code, p.reason, p.message) for p in recommendations.for_member(member_id)]
            for member_id in members
        }

    one_by_one = picks()
    with recommendations.preloaded(members):
        assert picks() == one_by_one
    assert one_by_one[expiring.id][0][:2] == ("fits", "expiring_points")
    assert one_by_one[redeemer.id][0][1] == "redeemed_before" and one_by_one[empty.id] == []
    assert queries.balances(members) == {member_id: queries.balance(member_id) for member_id in members}
