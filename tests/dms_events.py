"""Builders of DMS event documents for tests (valid by default; override what a test is about)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from app.core.clock import utcnow
from app.sync.samples import sample_delivery

_ids = itertools.count(1)


def _envelope(
    event_type: str,
    payload: dict[str, Any],
    *,
    dealer_code: str = "D0101",
    occurred_at: dt.datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id or f"evt-{next(_ids)}",
        "type": event_type,
        "occurred_at": (occurred_at or utcnow()).isoformat(),
        "dealer_code": dealer_code,
        "payload": payload,
    }


def delivered(
    phone: str,
    vin: str,
    *,
    price_fen: int = 20_000_000,
    order_no: str | None = None,
    purchase_type: str = "new",
    occurred_at: dt.datetime | None = None,
    **payload: Any,
) -> dict[str, Any]:
    document = sample_delivery(phone=phone)
    document["payload"].update(
        vin=vin,
        price_fen=price_fen,
        purchase_type=purchase_type,
        order_no=order_no or f"SO-{next(_ids)}",
        **payload,
    )
    if occurred_at:
        document["occurred_at"] = occurred_at.isoformat()
    document["event_id"] = f"evt-{next(_ids)}"
    return document


def cancelled(order_no: str, vin: str, **kw: Any) -> dict[str, Any]:
    return _envelope(
        "order.cancelled",
        {"order_no": order_no, "vin": vin, "cancelled_on": utcnow().date().isoformat()},
        **kw,
    )


def service(
    vin: str,
    *,
    parts_fen: int,
    labour_fen: int,
    repair_order_no: str | None = None,
    mileage_km: int = 12_000,
    **kw: Any,
) -> dict[str, Any]:
    return _envelope(
        "service.completed",
        {
            "repair_order_no": repair_order_no or f"RO-{next(_ids)}",
            "vin": vin,
            "completed_on": (kw.get("occurred_at") or utcnow()).date().isoformat(),
            "mileage_km": mileage_km,
            "parts_fen": parts_fen,
            "labour_fen": labour_fen,
        },
        **kw,
    )


def refund(
    repair_order_no: str,
    vin: str,
    *,
    parts_fen: int,
    labour_fen: int,
    refund_no: str | None = None,
    **kw: Any,
) -> dict[str, Any]:
    return _envelope(
        "service.refunded",
        {
            "repair_order_no": repair_order_no,
            "refund_no": refund_no or f"RF-{next(_ids)}",
            "vin": vin,
            "refunded_on": utcnow().date().isoformat(),
            "parts_fen": parts_fen,
            "labour_fen": labour_fen,
        },
        **kw,
    )


def insurance(vin: str, *, premium_fen: int, policy_no: str | None = None, **kw: Any) -> dict[str, Any]:
    today = utcnow().date()
    return _envelope(
        "insurance.renewed",
        {
            "policy_no": policy_no or f"PL-{next(_ids)}",
            "vin": vin,
            "premium_fen": premium_fen,
            "starts_on": today.isoformat(),
            "ends_on": today.replace(year=today.year + 1).isoformat(),
            "renewed_on": today.isoformat(),
        },
        **kw,
    )


def test_drive(phone: str, *, test_drive_id: str | None = None, **kw: Any) -> dict[str, Any]:
    return _envelope(
        "test_drive.completed",
        {
            "test_drive_id": test_drive_id or f"TD-{next(_ids)}",
            "phone": phone,
            "model_code": "TAYRON",
            "driven_on": utcnow().date().isoformat(),
        },
        **kw,
    )
