"""Referrals' member-360 tab: the member's referrals as referrer, referees masked."""

from __future__ import annotations

from typing import Any

from app.console.registry import Tab, TabContext, add_tab
from app.core.i18n import _l
from app.referrals import views

PER_PAGE = 20


def _referrals(context: TabContext) -> dict[str, Any]:
    page = context.page()
    rows, total = views.as_referrer(context.member.id, page=page, per_page=PER_PAGE)
    return {"referees": rows, "page": page, "pages": max(1, -(-total // PER_PAGE)), "total": total}


def register_tabs() -> None:
    add_tab(Tab("referrals", _l("Referrals"), "console/tabs/referrals.html", _referrals, order=58))
