"""Back office: mall items and flash offers (HQ), partner code batches, fulfilment of physical
orders (reading the address is audited), stock alerts and the monthly redemptions report."""

from __future__ import annotations

from typing import Any

from flask import Response

from app.core import audit
from app.core.errors import NotFound
from app.core.http import Blueprint
from app.mall import catalog, codes, ordering, reports
from app.mall.api import order_json
from app.mall.models import CodeBatch, FlashOffer, MallItem, RedemptionOrder
from app.mall.schemas import (
    CancelArgs,
    CodeBatchArgs,
    CodeBatchSchema,
    FlashOfferArgs,
    FlashOfferSchema,
    FulfilmentSchema,
    ItemChangeArgs,
    ItemSchema,
    NewItemArgs,
    ReportArgs,
    ReportLineSchema,
    ShipArgs,
    StockAlertSchema,
    StockArgs,
)
from app.operators.auth import current_operator, require_operator

blp = Blueprint("hq_mall", __name__, url_prefix="/api/v1", description="Back office: points mall")
BEARER = [{"bearerAuth": []}]
HQ = ("operator",)
READERS = ("operator", "supervisor")
FULFILMENT = ("operator", "supervisor")


def item_json(item: MallItem) -> dict[str, Any]:
    return {"id": item.id, "code": item.code} | {k: getattr(item, k) for k in catalog.ITEM_FIELDS}


def flash_json(offer: FlashOffer) -> dict[str, Any]:
    return {
        "id": offer.id,
        "item": offer.item.code,
        "points_price": offer.points_price,
        "quantity": offer.quantity,
        "sold": offer.sold,
        "starts_at": offer.starts_at,
        "ends_at": offer.ends_at,
    }


def batch_json(batch: CodeBatch) -> dict[str, Any]:
    return {
        "id": batch.id,
        "item": batch.item.code,
        "status": batch.status,
        "total_rows": batch.total_rows,
        "processed": batch.processed,
        "accepted": batch.accepted,
        "progress_percent": codes.progress_percent(batch),
        "errors": batch.errors,
    }


@blp.route("/program/mall/items")
@blp.doc(security=BEARER)
@blp.response(200, ItemSchema(many=True))
@require_operator(*READERS)
def list_items() -> list[dict[str, Any]]:
    return [item_json(i) for i in catalog.list_items()]


@blp.route("/program/mall/items", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(NewItemArgs)
@blp.response(201, ItemSchema)
@require_operator(*HQ)
def create_item(args: dict[str, Any]) -> dict[str, Any]:
    """A new item: kind, localized name and description, price, stock, limits, tiers, window."""
    code = args.pop("code")
    return item_json(catalog.create_item(code, args, actor=current_operator().username))


@blp.route("/program/mall/items/<code>", methods=["PATCH"])
@blp.doc(security=BEARER)
@blp.arguments(ItemChangeArgs)
@blp.response(200, ItemSchema)
@blp.alt_response(404, response="NOT_FOUND")
@require_operator(*HQ)
def change_item(args: dict[str, Any], code: str) -> dict[str, Any]:
    return item_json(catalog.update_item(catalog.get_item(code), args, actor=current_operator().username))


@blp.route("/program/mall/items/<code>/stock", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(StockArgs)
@blp.response(200, ItemSchema)
@blp.alt_response(404, response="NOT_FOUND")
@require_operator(*HQ)
def add_stock(args: dict[str, Any], code: str) -> dict[str, Any]:
    """Restock (or write off): relative to what is left, so redemptions meanwhile still count."""
    return item_json(catalog.add_stock(catalog.get_item(code), args["units"], actor=current_operator().username))


@blp.route("/program/mall/items/<code>/flash-offers", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(FlashOfferArgs)
@blp.response(201, FlashOfferSchema)
@blp.alt_response(404, response="NOT_FOUND")
@require_operator(*HQ)
def add_flash_offer(args: dict[str, Any], code: str) -> dict[str, Any]:
    """限时特惠: a price and a quantity for a window (windows of one item do not overlap)."""
    offer = catalog.add_flash_offer(catalog.get_item(code), actor=current_operator().username, **args)
    return flash_json(offer)


@blp.route("/program/mall/items/<code>/code-batches", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(CodeBatchArgs)
@blp.response(202, CodeBatchSchema)
@blp.alt_response(404, response="NOT_FOUND")
@require_operator(*HQ)
def upload_codes(args: dict[str, Any], code: str) -> dict[str, Any]:
    """Upload partner codes; processed in the background (poll the batch for progress and errors)."""
    return batch_json(codes.upload(catalog.get_item(code), args["csv"], actor=current_operator().username))


@blp.route("/program/mall/code-batches/<id:batch_id>")
@blp.doc(security=BEARER)
@blp.response(200, CodeBatchSchema)
@blp.alt_response(404, response="NOT_FOUND")
@require_operator(*READERS)
def code_batch(batch_id: int) -> dict[str, Any]:
    """A batch's progress (processed of total rows) and the rows refused, with their line."""
    batch = codes.get(batch_id)
    if batch is None:
        raise NotFound()
    return batch_json(batch)


def fulfilment_json(order: RedemptionOrder) -> dict[str, Any]:
    return order_json(order, "zh_CN") | {"member": order.member_id, "address": order.address}


def _audit_address_read(orders: list[RedemptionOrder]) -> None:
    if orders:
        operator = current_operator()
        audit.record(
            actor=("operator", operator.username),
            action="mall.addresses_read",
            subject=("mall_orders", ",".join(str(o.id) for o in orders)[:64]),
            details={"orders": [o.id for o in orders]},
        )


@blp.route("/cs/mall/orders")
@blp.doc(security=BEARER)
@blp.response(200, FulfilmentSchema(many=True))
@require_operator(*FULFILMENT)
def awaiting_fulfilment() -> list[dict[str, Any]]:
    """Physical orders waiting to be shipped, with their delivery address (the read is audited)."""
    orders = ordering.awaiting_fulfilment()
    _audit_address_read(orders)
    return [fulfilment_json(o) for o in orders]


@blp.route("/cs/mall/orders/<id:order_id>/ship", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(ShipArgs)
@blp.response(200, FulfilmentSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@require_operator(*FULFILMENT)
def ship(args: dict[str, Any], order_id: int) -> dict[str, Any]:
    order = ordering.ship(order_id, tracking_number=args["tracking_number"], actor=current_operator().username)
    return order_json(order, "zh_CN") | {"member": order.member_id, "address": None}


@blp.route("/cs/mall/orders/<id:order_id>/complete", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, FulfilmentSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@require_operator(*FULFILMENT)
def complete(order_id: int) -> dict[str, Any]:
    order = ordering.complete(order_id, actor=current_operator().username)
    return order_json(order, "zh_CN") | {"member": order.member_id, "address": None}


@blp.route("/cs/mall/orders/<id:order_id>/cancel", methods=["POST"])
@blp.doc(security=BEARER)
@blp.arguments(CancelArgs)
@blp.response(200, FulfilmentSchema)
@blp.alt_response(404, response="NOT_FOUND")
@blp.alt_response(409, response="CONFLICT")
@require_operator(*FULFILMENT)
def cancel(args: dict[str, Any], order_id: int) -> dict[str, Any]:
    """Cancel an order not yet fulfilled (e.g. undeliverable): points and stock come back."""
    order = ordering.cancel_by_operator(order_id, actor=current_operator().username, reason=args["reason"])
    return order_json(order, "zh_CN") | {"member": order.member_id, "address": None}


@blp.route("/program/mall/stock-alerts")
@blp.doc(security=BEARER)
@blp.response(200, StockAlertSchema(many=True))
@require_operator(*READERS)
def stock_alerts() -> list[dict[str, Any]]:
    """Items at or below their low-stock threshold, emptiest first."""
    return [
        {
            "item": a.item.code,
            "name": catalog.localized(a.item.name, "zh_CN"),
            "stock": a.item.stock,
            "low_stock_threshold": a.item.low_stock_threshold,
            "redeemed_last_7_days": a.redeemed_last_7_days,
        }
        for a in reports.low_stock()
    ]


@blp.route("/program/mall/report")
@blp.doc(security=BEARER)
@blp.arguments(ReportArgs, location="query")
@blp.response(200, ReportLineSchema(many=True))
@require_operator(*READERS)
def report(args: dict[str, Any]) -> list[dict[str, Any]]:
    """Redemptions per item in a month: orders, units, points, their ¥ value and the cost."""
    return [line.__dict__ for line in reports.redemptions(args["month"])]


@blp.route("/program/mall/report.csv")
@blp.doc(security=BEARER, responses={200: {"description": "CSV", "content": {"text/csv": {}}}})
@blp.arguments(ReportArgs, location="query")
@require_operator(*READERS)
def report_csv(args: dict[str, Any]) -> Response:
    """The same report as CSV (amounts in ¥)."""
    return Response(
        reports.redemptions_csv(args["month"]),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="mall-{args["month"]:%Y-%m}.csv"'},
    )
