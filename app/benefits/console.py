"""Benefits in the console: the member's bookings (benefit, dealer, slot, status, payment, rating),
and cancelling one on the member's behalf (``booking.cancel_on_behalf``: a reason, audited; agents
and supervisors may waive the cut-off, a dealer manager cancels only bookings at their dealer)."""

from __future__ import annotations

from typing import Any

from babel import Locale
from flask import request
from flask_babel import get_locale

from app.benefits import booking, catalog
from app.console.registry import Tab, TabContext, add_tab
from app.console.session import console_view, current
from app.console.views import bp, member_action
from app.core.i18n import _, _l, catalog_name
from app.members.models import Member
from app.operators.access import may_act_for_dealer

PER_PAGE = 20
CANCELLERS = ("agent", "supervisor", "dealer_manager")


def _bookings(context: TabContext) -> dict[str, Any]:
    page = context.page()
    rows, total = booking.history(context.member.id, page=page, per_page=PER_PAGE)
    locale = catalog_name(get_locale() or Locale.parse("zh_CN"))
    operator = context.operator
    for row in rows:
        row["benefit"] = catalog.localized(row.pop("benefit_name"), locale) or row["benefit_code"]
        row["may_cancel"] = (
            row["status"] == "booked" and operator.role in CANCELLERS and may_act_for_dealer(operator, row["dealer_id"])
        )
    return {
        "bookings": rows,
        "page": page,
        "pages": max(1, -(-total // PER_PAGE)),
        "total": total,
        "may_waive": operator.role in booking.WAIVERS,
        "cutoff_hours": booking.CANCEL_CUTOFF_HOURS.value(),
    }


@bp.route("/members/<member_no>/bookings/<id:booking_id>/cancel", methods=["POST"])
@console_view(*CANCELLERS, scope="member")
def cancel_booking(member_no: str, booking_id: int) -> Any:
    """Cancel a booking for the member (they called); past the cut-off only with a waiver."""

    def run(found: Member) -> str:
        cancelled = booking.cancel_on_behalf(
            found,
            booking_id,
            operator=current(),
            reason=request.form.get("reason", ""),
            waive_cutoff=request.form.get("waive_cutoff") == "1",
        )
        if cancelled.status == "cancelled":
            return _("Booking cancelled; the quota or points are given back.")
        return _("Booking cancelled after the cut-off: nothing is given back.")

    return member_action(member_no, "bookings", "console: cancel booking", run)


def register_tabs() -> None:
    add_tab(Tab("bookings", _l("Bookings"), "console/tabs/bookings.html", _bookings, order=55))
