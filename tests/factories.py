"""Factories for test data, built through the same services the app uses."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from app.core.clock import business_today, utcnow
from app.core.db import db
from app.dealers.models import Dealer, Staff
from app.members import services
from app.members.identifiers import vin_with_check_digit
from app.members.models import Member, Vehicle

_seq = itertools.count(1)


def dealer(code: str | None = None, **fields: Any) -> Dealer:
    n = next(_seq)
    row = Dealer(
        code=code or f"T{n:04d}",
        name=fields.pop("name", f"测试经销商 {n}"),
        region=fields.pop("region", "north"),
        city=fields.pop("city", "长春"),
        **fields,
    )
    db.session.add(row)
    db.session.flush()
    return row


def staff(at: Dealer, code: str | None = None, role: str = "sales_advisor", **fields: Any) -> Staff:
    n = next(_seq)
    row = Staff(
        dealer_id=at.id,
        staff_code=code or f"SA{n:05d}",
        name=fields.pop("name", f"顾问{n}"),
        role=role,
        **fields,
    )
    db.session.add(row)
    db.session.flush()
    return row


def phone() -> str:
    return f"139{next(_seq):08d}"


def vin() -> str:
    return vin_with_check_digit("LFV2A21K", f"T{next(_seq):07d}")


def member(status: str = "active", channel: str = "purchase", **fields: Any) -> Member:
    fields.setdefault("phone", phone())
    fields.setdefault("name", "测试会员")
    now = utcnow()
    row = services.create_member(
        channel=channel,
        status=status,
        enrolled_at=fields.pop("enrolled_at", now),
        activated_at=now if status == "active" else None,
        **fields,
    )
    services.record_consent(row, policy_version="2026.1", granted=["service_notifications"], channel="dms")
    return row


def vehicle(owner: Member | None = None, **fields: Any) -> Vehicle:
    row = Vehicle(
        vin=fields.pop("vin", None) or vin(),
        model_code=fields.pop("model_code", "MAGOTAN"),
        model_name=fields.pop("model_name", "迈腾"),
        purchase_date=fields.pop("purchase_date", business_today() - dt.timedelta(days=10)),
        price_fen=fields.pop("price_fen", 20_000_000),
        **fields,
    )
    db.session.add(row)
    db.session.flush()
    if owner is not None:
        services.start_ownership(owner, row, started_on=row.purchase_date)  # type: ignore[arg-type]
    return row


def operator(role: str = "agent", *, dealer_id: int | None = None, username: str | None = None):
    """A back-office user and a bearer token for it."""
    from app.operators import auth

    row = auth.create_operator(
        username or f"{role}{next(_seq)}",
        name=f"{role} user",
        role=role,
        password="correct horse",
        dealer_id=dealer_id,
    )
    return row, auth.issue_token(row)
