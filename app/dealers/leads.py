"""Sales leads handed to a dealer (``sales_leads``): written by benefit transfers now and by
referrals later, read by the dealer's staff through ``app.members.leads`` (which applies the
member's consent). One lead per source row: the unique (source, source_ref) makes a retry harmless."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.db import db, insert_if_absent
from app.dealers.models import LEAD_STATUSES, SalesLead


def record_lead(
    *,
    dealer_id: int,
    source: str,
    source_ref: str,
    member_id: int | None = None,
    phone_index: str | None = None,
    model_interest: str | None = None,
    referrer_member_id: int | None = None,
    at: dt.datetime | None = None,
) -> SalesLead:
    """The lead of this source row (created once, whatever the retries or races)."""
    now = at or utcnow()
    insert_if_absent(
        SalesLead,
        {
            "dealer_id": dealer_id,
            "member_id": member_id,
            "phone_index": phone_index,
            "model_interest": model_interest,
            "source": source,
            "source_ref": source_ref,
            "referrer_member_id": referrer_member_id,
            "status": "new",
            "created_at": now,
            "updated_at": now,
        },
        ("source", "source_ref"),
    )
    lead = db.session.scalar(sa.select(SalesLead).where(SalesLead.source == source, SalesLead.source_ref == source_ref))
    assert lead is not None
    return lead


def leads_of_dealer(dealer_id: int | None, *, status: str | None = None, limit: int = 1000) -> list[SalesLead]:
    """A dealer's leads, newest first (``dealer_id`` None: every dealer's, for HQ)."""
    query = sa.select(SalesLead).order_by(SalesLead.created_at.desc(), SalesLead.id.desc()).limit(limit)
    if dealer_id is not None:
        query = query.where(SalesLead.dealer_id == dealer_id)
    if status is not None:
        query = query.where(SalesLead.status == status)
    return list(db.session.scalars(query))


def set_status(lead: SalesLead, status: str) -> SalesLead:
    """Move a lead along new → contacted → converted / lost (any order: sales work is messy)."""
    if status not in LEAD_STATUSES:
        raise ValueError(status)
    lead.status = status
    lead.updated_at = utcnow()
    db.session.flush()
    return lead
