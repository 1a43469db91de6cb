"""The member-360 tabs available now. Each view returns its template's context; no queries here
beyond calling the domain's read functions."""

from __future__ import annotations

import dataclasses
from typing import Any

from app.complaints import services as complaints
from app.console.registry import Tab, TabContext, add_tab
from app.core.i18n import _l
from app.members import cards, service_desk
from app.members.identifiers import mask_plate, mask_vin
from app.points import adjustments, queries
from app.tiers import policy as tiers

PER_PAGE = 20


def _profile(context: TabContext) -> dict[str, Any]:
    member = context.member
    may_see = service_desk.may_see_profile(context.operator, member)
    card = cards.member_card(member, reveal=context.revealed and may_see)
    return {
        "card": card,
        "profile_hidden": not may_see,
        "consents": service_desk.consent_history(member.id),
        "reveal_reasons": service_desk.REVEAL_REASONS.value(),
    }


def _wechat(context: TabContext) -> dict[str, Any]:
    return {"identities": sorted(context.member.identities, key=lambda i: i.id), "revealed": context.revealed}


def _vehicles(context: TabContext) -> dict[str, Any]:
    revealed = context.revealed and service_desk.may_see_profile(context.operator, context.member)
    rows = [
        {
            "vin": o.vehicle.vin if revealed else mask_vin(o.vehicle.vin),
            "plate": o.vehicle.plate if revealed else mask_plate(o.vehicle.plate),
            "model": o.vehicle.model_name,
            "role": o.role,
            "started_on": o.started_on,
            "ended_on": o.ended_on,
            "end_reason": o.end_reason,
        }
        for o in sorted(context.member.ownerships, key=lambda o: (o.ended_on is None, o.started_on), reverse=True)
    ]
    return {"ownerships": rows}


def _tier(context: TabContext) -> dict[str, Any]:
    progress = queries.tier_progress(context.member.id)
    thresholds = tiers.THRESHOLDS.value()
    target = thresholds.get(progress.next_tier) if progress.next_tier else None
    percent = min(100, round(100 * progress.tier_points / target)) if target else 100
    return {"progress": progress, "percent": percent, "history": list(reversed(tiers.history(context.member.id)))}


def _ledger(context: TabContext) -> dict[str, Any]:
    page = context.page()
    items, total = queries.history(context.member.id, page=page, per_page=PER_PAGE)
    return {
        "balance": dataclasses.asdict(queries.balance(context.member.id)),
        "entries": items,
        "page": page,
        "pages": max(1, -(-total // PER_PAGE)),
        "total": total,
        "adjustment_reasons": adjustments.REASON_CODES.value(),
        "threshold": adjustments.APPROVAL_THRESHOLD.value(),
        "pending": adjustments.pending_for_member(context.member.id),
    }


def _complaints(context: TabContext) -> dict[str, Any]:
    return {"complaints": complaints.complaints_of(context.member.id), "categories": complaints.CATEGORIES.value()}


def _audit(context: TabContext) -> dict[str, Any]:
    page = context.page()
    rows, total = service_desk.audit_trail(context.member.id, page=page, per_page=PER_PAGE)
    return {"entries": rows, "page": page, "pages": max(1, -(-total // PER_PAGE)), "total": total}


def register_core_tabs() -> None:
    """The tabs of the member core; later packages add bookings, notifications, CRM... the same way."""
    for tab in (
        Tab("profile", _l("Profile and consents"), "console/tabs/profile.html", _profile, order=10),
        Tab("wechat", _l("WeChat identities"), "console/tabs/wechat.html", _wechat, order=20),
        Tab("vehicles", _l("Vehicles"), "console/tabs/vehicles.html", _vehicles, order=30),
        Tab("tier", _l("Tier"), "console/tabs/tier.html", _tier, order=40),
        Tab("ledger", _l("Points ledger"), "console/tabs/ledger.html", _ledger, order=50),
        Tab("complaints", _l("Complaints"), "console/tabs/complaints.html", _complaints, order=80),
        Tab("audit", _l("Audit trail"), "console/tabs/audit.html", _audit, order=1000),
    ):
        add_tab(tab)
