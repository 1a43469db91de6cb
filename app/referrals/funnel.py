"""The operators' referral funnel per dealer and month (leads, test drives, orders, deliveries,
rewards paid, clawed back) and the leads a dealer may see (only with the referee's consent)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import asdict, dataclass

import sqlalchemy as sa

from app.core import audit
from app.core.clock import business_day_start
from app.core.db import db
from app.dealers.models import Dealer, SalesLead
from app.members.access import shares_with_dealers
from app.members.identifiers import mask_name
from app.members.models import Member
from app.referrals.models import Referral


@dataclass(frozen=True)
class FunnelRow:
    dealer_code: str
    month: str
    leads: int
    test_drives: int
    orders: int
    deliveries: int
    rewarded: int
    reward_points: int
    capped: int
    held: int
    clawed_back: int
    clawed_back_points: int


def _next_month(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _month_key() -> sa.ColumnElement[object]:
    """The attribution's month on the business calendar (Asia/Shanghai); ``date_trunc`` costs a
    fraction of ``to_char`` per row, so PostgreSQL groups on a timestamp formatted afterwards."""
    if db.dialect == "postgresql":
        return sa.func.date_trunc("month", sa.func.timezone("Asia/Shanghai", Referral.attributed_at))
    return sa.func.strftime("%Y-%m", sa.func.datetime(Referral.attributed_at, "+8 hours"))


def funnel_statement(first: dt.date, last: dt.date, dealer_id: int | None = None) -> sa.Select:
    """One pass over the month range's referrals, grouped by dealer and month."""
    month = _month_key().label("month")
    query = (
        sa.select(
            Referral.dealer_id,
            month,
            sa.func.count().label("leads"),
            sa.func.count(Referral.test_drive_at).label("test_drives"),
            sa.func.count(Referral.ordered_at).label("orders"),
            sa.func.count(Referral.delivered_at).label("deliveries"),
            sa.func.count().filter(Referral.reward_status.in_(("credited", "clawed_back"))).label("rewarded"),
            sa.func.coalesce(sa.func.sum(Referral.reward_points), 0).label("reward_points"),
            sa.func.count().filter(Referral.reward_status == "capped").label("capped"),
            sa.func.count().filter(Referral.reward_status == "held").label("held"),
            sa.func.count().filter(Referral.reward_status == "clawed_back").label("clawed_back"),
            sa.func.coalesce(sa.func.sum(Referral.clawed_back_points), 0).label("clawed_back_points"),
        )
        .where(
            Referral.attributed_at >= business_day_start(first),
            Referral.attributed_at < business_day_start(_next_month(last)),
        )
        .group_by(Referral.dealer_id, month)
        .order_by(month, Referral.dealer_id)
    )
    if dealer_id is not None:
        query = query.where(Referral.dealer_id == dealer_id)
    return query


def funnel(first: dt.date, last: dt.date | None = None, *, dealer_id: int | None = None) -> list[FunnelRow]:
    rows = db.session.execute(funnel_statement(first, last or first, dealer_id)).all()
    dealers = dict(
        db.session.execute(sa.select(Dealer.id, Dealer.code).where(Dealer.id.in_({r[0] for r in rows}))).all()
    )
    return [FunnelRow(dealers[r[0]], _month_text(r[1]), *r[2:]) for r in rows]


def _month_text(month: object) -> str:
    return month if isinstance(month, str) else month.strftime("%Y-%m")  # type: ignore[attr-defined]


def funnel_csv(rows: list[FunnelRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(FunnelRow.__dataclass_fields__))
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    return buffer.getvalue()


@dataclass(frozen=True)
class DealerLeads:
    shared: list[dict[str, object]]
    #: Referees who did not consent to dealer sharing: the dealer sees only how many.
    not_shared: int


def leads_for_dealer(dealer_id: int, month: dt.date, *, actor: tuple[str, str]) -> DealerLeads:
    """The month's referral leads of a dealer; contact details only with ``dealer_sharing`` (audited)."""
    rows = db.session.execute(
        sa.select(SalesLead, Referral, Member)
        .join(Referral, Referral.lead_id == SalesLead.id)
        .join(Member, Member.id == SalesLead.member_id)
        .where(
            SalesLead.dealer_id == dealer_id,
            SalesLead.source == "referral",
            SalesLead.created_at >= business_day_start(month),
            SalesLead.created_at < business_day_start(_next_month(month)),
        )
        .order_by(SalesLead.created_at)
    ).all()
    shared, hidden = [], 0
    for lead, referral, member in rows:
        if not shares_with_dealers(member):
            hidden += 1
            continue
        shared.append(
            {
                "lead_id": lead.id,
                "name": mask_name(member.name),
                "phone": member.phone,
                "milestone": referral.milestone,
                "status": lead.status,
                "created_at": lead.created_at,
            }
        )
    audit.record(
        actor=actor,
        action="referral.leads.read",
        subject=("dealer", dealer_id),
        details={"month": month.isoformat(), "lead_ids": [s["lead_id"] for s in shared]},
    )
    return DealerLeads(shared, hidden)
