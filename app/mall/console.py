"""The mall's member-360 tab: redemption orders with their vouchers; delivery addresses masked."""

from __future__ import annotations

from collections import Counter
from typing import Any

from babel import Locale
from flask_babel import get_locale

from app.console.registry import Tab, TabContext, add_tab
from app.core.i18n import _l, catalog_name
from app.mall import catalog, ordering
from app.members import service_desk
from app.members.identifiers import mask_address

PER_PAGE = 20


def _redemptions(context: TabContext) -> dict[str, Any]:
    page = context.page()
    orders, total = ordering.history(context.member.id, page=page, per_page=PER_PAGE)
    revealed = context.revealed and service_desk.may_see_profile(context.operator, context.member)
    locale = catalog_name(get_locale() or Locale.parse("zh_CN"))
    rows = [
        {
            "created_at": order.created_at,
            "item": catalog.localized(order.item.name, locale) or order.item.code,
            "quantity": order.quantity,
            "points": order.points_spent,
            "status": order.status,
            "vouchers": sorted(Counter(v.status for v in order.vouchers).items()),
            "address": order.address if revealed else mask_address(order.address),
            "tracking_number": order.tracking_number,
        }
        for order in orders
    ]
    return {"orders": rows, "page": page, "pages": max(1, -(-total // PER_PAGE)), "total": total}


def register_tabs() -> None:
    add_tab(Tab("redemptions", _l("Redemptions"), "console/tabs/redemptions.html", _redemptions, order=57))
