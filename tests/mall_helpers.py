"""Shared set-up for the mall tests: items written through the catalog service, members with points."""

from __future__ import annotations

import itertools
from typing import Any

from app.mall import catalog
from app.mall.models import MallItem

_codes = itertools.count(1)


def item(
    kind: str = "coupon", *, points: int = 400, stock: int = 50, code: str | None = None, **fields: Any
) -> MallItem:
    """An open item (points only) created the way HQ creates one."""
    values = {
        "kind": kind,
        "name": {"zh_CN": f"商品{kind}", "en": f"Item {kind}"},
        "description": {"zh_CN": "说明", "en": "About it"},
        "points_price": points,
        "stock": stock,
        "cost_fen": 2000,
        "eligible_tiers": [],
    } | fields
    return catalog.create_item(code or f"item{next(_codes):04d}", values, actor="cli:test")
