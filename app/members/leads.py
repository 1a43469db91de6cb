"""Sales leads as a dealer's staff see them (the rule in README "Who sees a member"): HQ roles see
every lead; a dealer manager sees their dealer's leads, and *who* a lead is (masked name and phone,
member number) only while that person shares their data with dealers (``dealer_sharing``); the
others are only counted. Every read is audited with the members it showed."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from app.core import audit
from app.core.db import db
from app.core.errors import NotFound
from app.dealers import leads
from app.dealers.models import Dealer, SalesLead
from app.members.access import PROFILE, shares_with_dealers, visible_to
from app.members.identifiers import mask_name, mask_phone
from app.members.models import Member
from app.operators.access import may_act_for_dealer
from app.operators.models import Operator


@dataclass
class LeadList:
    """The leads an operator may see in full, and how many more their dealer has without consent."""

    items: list[dict[str, Any]] = field(default_factory=list)
    hidden: int = 0


def _person(operator: Operator, member_id: int | None) -> Member | None:
    member = db.session.get(Member, member_id) if member_id is not None else None
    if member is None:
        return None
    if operator.role == "dealer_manager" and not shares_with_dealers(member):
        return None
    return member


def _row(operator: Operator, lead: SalesLead, member: Member) -> dict[str, Any]:
    referrer = db.session.get(Member, lead.referrer_member_id) if lead.referrer_member_id else None
    dealer = db.session.get(Dealer, lead.dealer_id)
    return {
        "id": lead.id,
        "dealer_code": dealer.code if dealer else None,
        "member_no": member.member_no,
        "name": mask_name(member.name),
        "phone": mask_phone(member.phone),
        "model_interest": lead.model_interest,
        "source": lead.source,
        "referrer_member_no": referrer.member_no
        if referrer is not None and visible_to(operator, referrer, purpose=PROFILE)
        else None,
        "status": lead.status,
        "created_at": lead.created_at,
    }


def leads_for(operator: Operator, *, status: str | None = None) -> LeadList:
    """The operator's leads, newest first (a dealer manager: their dealer's; HQ: every dealer's)."""
    dealer_id = operator.dealer_id if operator.role == "dealer_manager" else None
    if operator.role == "dealer_manager" and dealer_id is None:
        return LeadList()
    result = LeadList()
    for lead in leads.leads_of_dealer(dealer_id, status=status):
        member = _person(operator, lead.member_id)
        if member is None:
            result.hidden += 1
        else:
            result.items.append(_row(operator, lead, member))
    audit.record(
        actor=("staff", operator.actor),
        action="sales_leads.read",
        subject=("dealer", dealer_id if dealer_id is not None else "all"),
        details={"members": [row["member_no"] for row in result.items], "hidden": result.hidden},
    )
    return result


def update_status(operator: Operator, lead_id: int, status: str) -> dict[str, Any]:
    """A dealer's sales team moves its own lead along; another dealer's lead is not found."""
    lead = db.session.get(SalesLead, lead_id)
    if lead is None or not may_act_for_dealer(operator, lead.dealer_id):
        raise NotFound()
    member = _person(operator, lead.member_id)
    leads.set_status(lead, status)
    audit.record(
        actor=("staff", operator.actor),
        action="sales_lead.status",
        subject=("sales_lead", lead.id),
        details={"status": status},
    )
    if member is None:
        return {"id": lead.id, "status": lead.status, "member_no": None, "name": None, "phone": None}
    return _row(operator, lead, member)


CSV_COLUMNS = (
    "id",
    "dealer_code",
    "member_no",
    "name",
    "phone",
    "model_interest",
    "source",
    "referrer_member_no",
    "status",
    "created_at",
)


def to_csv(result: LeadList) -> str:
    """The visible leads as CSV (masked like the list), with the count of hidden ones as the last line."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in result.items:
        writer.writerow([row[column].isoformat() if column == "created_at" else row[column] for column in CSV_COLUMNS])
    writer.writerow([f"# {result.hidden} more without consent to share with dealers"])
    return out.getvalue()
