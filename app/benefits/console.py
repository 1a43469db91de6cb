"""Benefits' member-360 tab: the member's bookings (benefit, dealer, slot, status, payment, rating)."""

from __future__ import annotations

from typing import Any

from babel import Locale
from flask_babel import get_locale

from app.benefits import booking, catalog
from app.console.registry import Tab, TabContext, add_tab
from app.core.i18n import _l, catalog_name

PER_PAGE = 20


def _bookings(context: TabContext) -> dict[str, Any]:
    page = context.page()
    rows, total = booking.history(context.member.id, page=page, per_page=PER_PAGE)
    locale = catalog_name(get_locale() or Locale.parse("zh_CN"))
    for row in rows:
        row["benefit"] = catalog.localized(row.pop("benefit_name"), locale) or row["benefit_code"]
    return {"bookings": rows, "page": page, "pages": max(1, -(-total // PER_PAGE)), "total": total}


def register_tabs() -> None:
    add_tab(Tab("bookings", _l("Bookings"), "console/tabs/bookings.html", _bookings, order=55))
