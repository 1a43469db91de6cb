"""Mini-app: the mall (what I can redeem, my limits), redemptions, vouchers, recommendations, the
daily sign-in and surveys; staff mode: scanning a voucher at the dealer."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, g, jsonify

from app.api.auth import BEARER, consented_member_ref_required, member_required, per_user_limit, staff_required
from app.core.clock import utcnow
from app.core.errors import NotFound
from app.core.http import Blueprint
from app.mall import catalog, engagement, ordering, payments, recommendations, settling, vouchers
from app.mall.catalog import Offer
from app.mall.models import RedemptionOrder, Voucher
from app.mall.schemas import (
    ActivityArgs,
    ActivitySchema,
    MallCatalogArgs,
    MallOfferSchema,
    OrderSchema,
    RecommendationSchema,
    RedemptionArgs,
    SignInSchema,
    VoucherScanArgs,
    VoucherSchema,
)
from app.points import queries
from app.tiers.policy import current_tier

blp = Blueprint("mall", __name__, url_prefix="/api/v1", description="Mini-app: points mall and activities")


def offer_json(offer: Offer, locale: str) -> dict[str, Any]:
    item, flash, limits = offer.item, offer.flash, offer.limits
    return {
        "code": item.code,
        "kind": item.kind,
        "name": catalog.localized(item.name, locale),
        "description": catalog.localized(item.description, locale),
        "image_url": item.image_url,
        "points_price": offer.unit_points,
        "usual_points_price": item.points_price,
        "cash_fen": item.cash_fen,
        "flash": None
        if flash is None
        else {
            "points_price": flash.points_price,
            "quantity": flash.quantity,
            "left": flash.quantity - flash.sold,
            "ends_at": flash.ends_at,
        },
        "in_stock": item.stock > 0,
        "redeemable": offer.redeemable,
        "reason": offer.reason,
        "limits_left": {"per_order": limits.per_order, "this_month": limits.this_month, "lifetime": limits.lifetime},
        "affordable_units": offer.affordable_units,
    }


def voucher_json(row: Voucher, locale: str) -> dict[str, Any]:
    usable = row.status == "issued"
    return {
        "id": row.id,
        "order": row.order_id,
        "item": row.order.item.code,
        "item_name": catalog.localized(row.order.item.name, locale),
        "status": row.status,
        "code": row.code if usable else None,
        "qr_url": f"/api/v1/me/vouchers/{row.id}/qr.png" if usable else None,
        "issued_at": row.issued_at,
        "expires_at": row.expires_at,
        "used_at": row.used_at,
    }


def payment_json(row: RedemptionOrder, *, with_params: bool = False) -> dict[str, Any] | None:
    """The cash part of a points + cash order (no read for a points-only one)."""
    payment = payments.of_order(row.id) if row.cash_fen else None
    if payment is None:
        return None
    return {
        "status": payment.status,
        "amount_fen": payment.amount_fen,
        "expires_at": payment.expires_at,
        "pay_params": payments.pay_params(payment) if with_params else None,
    }


def order_json(row: RedemptionOrder, locale: str, *, with_codes: bool = False) -> dict[str, Any]:
    return {
        "id": row.id,
        "request_id": row.request_id,
        "item": row.item.code,
        "item_name": catalog.localized(row.item.name, locale),
        "kind": row.item.kind,
        "quantity": row.quantity,
        "unit_points": row.unit_points,
        "points_spent": row.points_spent,
        "cash_fen": row.cash_fen,
        "status": row.status,
        "payment": payment_json(row, with_params=with_codes),
        "flash_offer": row.flash_offer_id,
        "tracking_number": row.tracking_number,
        "created_at": row.created_at,
        "fulfilled_at": row.fulfilled_at,
        "completed_at": row.completed_at,
        "cancelled_at": row.cancelled_at,
        "vouchers": [voucher_json(v, locale) for v in row.vouchers] if with_codes else [],
    }


def _my_offers() -> list[Offer]:
    available = queries.balance(g.member.id).available
    return catalog.offers(g.member.id, current_tier(g.member.id), available)


@blp.route("/mall/items")
@blp.doc(security=BEARER)
@blp.arguments(MallCatalogArgs, location="query")
@blp.response(200, MallOfferSchema(many=True))
@member_required
def my_catalog(args: dict[str, Any]) -> list[dict[str, Any]]:
    """Items my tier may redeem, with the price now, my limits left and why not; ``affordable``
    keeps only what I can redeem now."""
    offers = [o for o in _my_offers() if o.redeemable or not args["affordable"]]
    return [offer_json(o, g.member.locale) for o in offers]


@blp.route("/mall/items/<code>")
@blp.doc(security=BEARER)
@blp.response(200, MallOfferSchema)
@blp.alt_response(404, response="NOT_FOUND")
@member_required
def item_detail(code: str) -> dict[str, Any]:
    """One item as I see it: price now, stock, my limits left (per order, this month, lifetime)."""
    item = catalog.item_by_code(code)
    tier = current_tier(g.member.id)
    if item is None or not catalog.tier_allowed(item, tier) or not item.active:
        raise NotFound()
    offer = catalog.offer(item, g.member.id, tier, queries.balance(g.member.id).available, utcnow())
    return offer_json(offer, g.member.locale)


@blp.route("/mall/recommendations")
@blp.doc(security=BEARER)
@blp.response(200, RecommendationSchema(many=True))
@member_required
def my_recommendations() -> list[dict[str, Any]]:
    """Up to three items for me, each with the reason ("spend the points that expire …")."""
    return [
        {"item": offer_json(r.offer, g.member.locale), "reason": r.reason, "message": r.message}
        for r in recommendations.for_member(g.member.id)
    ]


@blp.route("/me/redemptions")
@blp.doc(security=BEARER)
@blp.response(200, OrderSchema(many=True))
@member_required
def my_orders() -> list[dict[str, Any]]:
    return [order_json(o, g.member.locale, with_codes=True) for o in ordering.for_member(g.member.id)]


@blp.route("/me/redemptions", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(RedemptionArgs)
@blp.response(201, OrderSchema)
@blp.alt_response(409, response="CONFLICT")
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@consented_member_ref_required
@per_user_limit("30/minute")
def redeem(args: dict[str, Any]) -> Response:
    """Redeem: points spent and stock taken together; a resend with the same ``request_id``
    returns the same order. Vouchers come with the answer. A points + cash item answers
    ``awaiting_payment`` with ``payment.pay_params`` for ``wx.requestPayment``; the order moves on
    when WeChat Pay says it is paid, and is closed (points and stock given back) if unpaid in time."""
    result = ordering.redeem(
        g.member,
        item_code=args["item"],
        quantity=args["quantity"],
        request_id=args["request_id"],
        address=args.get("address"),
        payer_openid=g.identity.openid,
    )
    # the document ``OrderSchema`` describes, written without its dump (this is the mall's hot path)
    answer = jsonify(_plain(order_json(result.order, g.member.locale, with_codes=True)))
    answer.status_code = 201
    return answer


def _plain(value: Any) -> Any:
    """JSON-ready as marshmallow's ``DateTime`` writes it (ISO 8601); the rest is already plain."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value.isoformat() if isinstance(value, dt.datetime) else value


@blp.route("/me/redemptions/<id:order_id>/cancel", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, OrderSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@member_required
def cancel(order_id: int) -> dict[str, Any]:
    """Cancel before fulfilment: the points go back into their lots, the stock is returned; an
    unpaid points + cash order is closed at WeChat Pay first, a paid one gets its cash refunded."""
    return order_json(settling.cancel(g.member, order_id), g.member.locale)


@blp.route("/me/vouchers")
@blp.doc(security=BEARER)
@blp.response(200, VoucherSchema(many=True))
@member_required
def my_vouchers() -> list[dict[str, Any]]:
    """My vouchers; usable ones carry the code and its QR image."""
    return [voucher_json(v, g.member.locale) for v in vouchers.for_member(g.member.id)]


@blp.route("/me/vouchers/<id:voucher_id>")
@blp.doc(security=BEARER)
@blp.response(200, VoucherSchema)
@blp.alt_response(404, response="NOT_FOUND")
@member_required
def my_voucher(voucher_id: int) -> dict[str, Any]:
    return voucher_json(vouchers.get_for_member(g.member.id, voucher_id), g.member.locale)


@blp.route("/me/vouchers/<id:voucher_id>/qr.png")
@blp.doc(security=BEARER, responses={200: {"description": "PNG", "content": {"image/png": {}}}})
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@member_required
def voucher_qr(voucher_id: int) -> Response:
    """The voucher's code as a QR image, to show at the dealer (only while it is usable)."""
    voucher = vouchers.get_for_member(g.member.id, voucher_id)
    return Response(vouchers.png(voucher), mimetype="image/png")


@blp.route("/me/sign-ins")
@blp.doc(security=BEARER)
@blp.response(200, SignInSchema)
@member_required
def my_sign_in() -> dict[str, Any]:
    """Whether I signed in today and my streak."""
    return engagement.today_status(g.member).__dict__


@blp.route("/me/sign-ins", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, SignInSchema)
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@member_required
@per_user_limit("30/minute")
def sign_in() -> dict[str, Any]:
    """Sign in for today: points once per day (capped per month), the streak shown."""
    return engagement.sign_in(g.member).__dict__


@blp.route("/me/activities", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ActivityArgs)
@blp.response(200, ActivitySchema)
@blp.alt_response(409, response="CONFLICT")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@member_required
@per_user_limit("30/minute")
def activity(args: dict[str, Any]) -> dict[str, Any]:
    """A survey completed, an article read or content shared: its points once (per content id, or
    per content and day for a share), within the earning rule's caps; 409 ``activity_capped`` once
    the cap for the period is reached."""
    return engagement.activity_done(g.member, args["activity"], args["ref"]).__dict__


@blp.route("/staff/vouchers/scans", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(VoucherScanArgs)
@blp.response(200, VoucherSchema)
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@staff_required
@per_user_limit("60/minute")
def scan_voucher(args: dict[str, Any]) -> dict[str, Any]:
    """Dealer staff scan a member's voucher: it is used once (audited); a second scan is refused."""
    voucher = vouchers.consume(g.staff, args["code"])
    return voucher_json(voucher, "zh_CN")
