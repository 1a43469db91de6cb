"""Monthly dealer settlement (积分结算), computed from the ledger.

Per dealer and business month:

* **funded**: reward points the dealer paid for (earn entries whose funder is the dealer), net of
  their reversals;
* **redeemed**: reward points members spent at the dealer, net of redemptions given back;
* **cost lines** beside the points (``dealer_settlement_lines``): benefits the dealer delivered,
  per benefit and funder, with their cost, written by the benefits package when it hears
  ``SettlementMonthComputing``; the OEM-funded ones are **benefit_fen**, owed to the dealer;
* **net**: (redeemed − funded) × point value + benefit_fen, in fen. Positive: the OEM pays the dealer.

Statements move draft → reviewed → approved → paid; a draft is recomputed when generated again,
later states are frozen. The approver must be someone other than the reviewer. CSV export for
finance.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from app.core import audit, events, tunables
from app.core.clock import business_day_start, business_today, utcnow
from app.core.db import db
from app.core.errors import Conflict, Forbidden, NotFound
from app.core.i18n import _l
from app.dealers.models import Dealer
from app.jobs import job
from app.points.events import SettlementMonthComputing
from app.points.models import DealerSettlement, PointEntry, SettlementLine

POINT_VALUE_FEN = tunables.define("points.point_value_fen", 20, "Value of one reward point in fen (5 points = ¥1)")

_NEXT = {"draft": "reviewed", "reviewed": "approved", "approved": "paid"}


def month_bounds(month: dt.date) -> tuple[dt.datetime, dt.datetime]:
    first = month.replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return business_day_start(first), business_day_start(following)


def _totals(month: dt.date) -> dict[int, dict[str, int]]:
    """funded and redeemed points per dealer in the month (set-based)."""
    start, end = month_bounds(month)
    original = aliased(PointEntry)
    in_month = sa.and_(
        PointEntry.currency == "reward",
        PointEntry.dealer_id.is_not(None),
        PointEntry.created_at >= start,
        PointEntry.created_at < end,
    )
    funded_signed = sa.case(
        (sa.and_(PointEntry.kind == "earn", PointEntry.funder == "dealer"), PointEntry.points),
        (
            sa.and_(PointEntry.kind == "reverse", original.kind == "earn", original.funder == "dealer"),
            PointEntry.points,
        ),
        else_=0,
    )
    redeemed_signed = sa.case(
        (PointEntry.kind == "spend", -PointEntry.points),
        (sa.and_(PointEntry.kind == "reverse", original.kind == "spend"), -PointEntry.points),
        (PointEntry.kind == "refund", -PointEntry.points),
        else_=0,
    )
    rows = db.session.execute(
        sa.select(PointEntry.dealer_id, sa.func.sum(funded_signed), sa.func.sum(redeemed_signed))
        .outerjoin(original, original.id == PointEntry.reverses_entry_id)
        .where(in_month)
        .group_by(PointEntry.dealer_id)
    )
    return {
        dealer_id: {"funded": int(funded or 0), "redeemed": int(redeemed or 0)} for dealer_id, funded, redeemed in rows
    }


@dataclass(frozen=True)
class CostLine:
    """One line another package settles with a dealer for a month (see ``SettlementLine``)."""

    dealer_id: int
    code: str
    funder: str
    quantity: int
    amount_fen: int


def _frozen_dealers(month: dt.date) -> set[int]:
    return set(
        db.session.scalars(
            sa.select(DealerSettlement.dealer_id).where(
                DealerSettlement.month == month, DealerSettlement.status != "draft"
            )
        )
    )


def replace_lines(month: dt.date, kind: str, lines: Iterable[CostLine]) -> int:
    """Replace the month's ``kind`` lines of every dealer whose statement is not frozen yet."""
    month = month.replace(day=1)
    frozen = _frozen_dealers(month)
    query = sa.delete(SettlementLine).where(SettlementLine.month == month, SettlementLine.kind == kind)
    if frozen:
        query = query.where(SettlementLine.dealer_id.not_in(frozen))
    db.session.execute(query)
    rows = [SettlementLine(month=month, kind=kind, **line.__dict__) for line in lines if line.dealer_id not in frozen]
    db.session.add_all(rows)
    db.session.flush()
    return len(rows)


def lines_of(dealer_id: int, month: dt.date) -> list[SettlementLine]:
    return list(
        db.session.scalars(
            sa.select(SettlementLine)
            .where(SettlementLine.dealer_id == dealer_id, SettlementLine.month == month.replace(day=1))
            .order_by(SettlementLine.kind, SettlementLine.code, SettlementLine.funder)
        )
    )


def _oem_costs(month: dt.date) -> dict[int, int]:
    """Per dealer: the month's cost lines the OEM funds (owed to the dealer)."""
    rows = db.session.execute(
        sa.select(SettlementLine.dealer_id, sa.func.sum(SettlementLine.amount_fen))
        .where(SettlementLine.month == month, SettlementLine.funder == "oem")
        .group_by(SettlementLine.dealer_id)
    )
    costs = {dealer_id: int(total or 0) for dealer_id, total in rows}
    for dealer_id in db.session.scalars(sa.select(SettlementLine.dealer_id).where(SettlementLine.month == month)):
        costs.setdefault(dealer_id, 0)  # lines funded by others still make a statement
    return costs


def generate(month: dt.date, *, actor: str) -> list[DealerSettlement]:
    """Create or refresh the month's draft statements for every dealer with activity (points or
    cost lines, which their packages write when ``SettlementMonthComputing`` is published)."""
    month = month.replace(day=1)
    value = POINT_VALUE_FEN.value()
    start, end = month_bounds(month)
    events.publish(SettlementMonthComputing(month, start, end))
    points = _totals(month)
    costs = _oem_costs(month)
    statements = []
    for dealer_id in sorted(points.keys() | costs.keys()):
        totals = points.get(dealer_id, {"funded": 0, "redeemed": 0})
        statement = db.session.scalar(
            sa.select(DealerSettlement)
            .where(DealerSettlement.dealer_id == dealer_id, DealerSettlement.month == month)
            .with_for_update()
        )
        if statement is None:
            statement = DealerSettlement(dealer_id=dealer_id, month=month, status="draft", point_value_fen=value)
            db.session.add(statement)
        elif statement.status != "draft":
            statements.append(statement)
            continue
        statement.funded_points = totals["funded"]
        statement.redeemed_points = totals["redeemed"]
        statement.point_value_fen = value
        statement.benefit_fen = costs.get(dealer_id, 0)
        statement.net_fen = (totals["redeemed"] - totals["funded"]) * value + statement.benefit_fen
        statement.computed_at = utcnow()
        statements.append(statement)
    db.session.flush()
    audit.record(
        actor=("staff", actor),
        action="settlement.generated",
        subject=("settlement_month", month.isoformat()),
        details={"statements": len(statements)},
    )
    return statements


def advance(statement_id: int, to_status: str, *, actor: str, payment_ref: str | None = None) -> DealerSettlement:
    """Move one statement a step forward; the approver must differ from the reviewer."""
    statement = db.session.get(DealerSettlement, statement_id, with_for_update=True)
    if statement is None:
        raise NotFound()
    if _NEXT.get(statement.status) != to_status:
        raise Conflict(_l("A statement in this state cannot move there."), details={"status": statement.status})
    now = utcnow()
    if to_status == "reviewed" and month_bounds(statement.month)[1] > now:
        # Reviewed statements are frozen: the rest of the month would never be settled.
        raise Conflict(_l("The month is not over yet: its statement can be reviewed from the 1st."))
    if to_status == "reviewed":
        statement.reviewed_by, statement.reviewed_at = actor, now
    elif to_status == "approved":
        if actor == statement.reviewed_by:
            raise Forbidden(_l("The approver must be someone other than the reviewer."))
        statement.approved_by, statement.approved_at = actor, now
    else:
        statement.paid_by, statement.paid_at, statement.payment_ref = actor, now, payment_ref
    statement.status = to_status
    audit.record(
        actor=("staff", actor),
        action=f"settlement.{to_status}",
        subject=("settlement", statement.id),
        details={"net_fen": statement.net_fen, "payment_ref": payment_ref},
    )
    return statement


def statements_for(month: dt.date) -> list[tuple[DealerSettlement, Dealer]]:
    return list(
        db.session.execute(
            sa.select(DealerSettlement, Dealer)
            .join(Dealer, Dealer.id == DealerSettlement.dealer_id)
            .where(DealerSettlement.month == month.replace(day=1))
            .order_by(Dealer.code)
        ).all()
    )


#: A spreadsheet reads a cell starting with one of these as a formula (or, tab and CR, as a cell
#: boundary a formula can hide behind): CSV injection.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def csv_safe(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: one starting like a formula gets a leading ``'``
    (OWASP's advice). Numbers, and text that is a plain number such as ``-3.00``, are left alone."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def to_csv(month: dt.date) -> str:
    """The month's statements for finance; every text cell passes through :func:`csv_safe`."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "month",
            "dealer_code",
            "dealer_name",
            "funded_points",
            "redeemed_points",
            "point_value_fen",
            "net_fen",
            "net_yuan",
            "status",
            "reviewed_by",
            "approved_by",
            "paid_at",
            "payment_ref",
            "benefit_fen",
        ]
    )
    for statement, dealer in statements_for(month):
        row = [
            statement.month.isoformat(),
            dealer.code,
            dealer.name,
            statement.funded_points,
            statement.redeemed_points,
            statement.point_value_fen,
            statement.net_fen,
            f"{statement.net_fen / 100:.2f}",
            statement.status,
            statement.reviewed_by or "",
            statement.approved_by or "",
            statement.paid_at.isoformat() if statement.paid_at else "",
            statement.payment_ref or "",
            statement.benefit_fen,
        ]
        writer.writerow([csv_safe(cell) for cell in row])
    return out.getvalue()


def as_dict(statement: DealerSettlement, dealer: Dealer | None = None) -> dict[str, Any]:
    return {
        "id": statement.id,
        "dealer_code": dealer.code if dealer else None,
        "month": statement.month.isoformat(),
        "status": statement.status,
        "funded_points": statement.funded_points,
        "redeemed_points": statement.redeemed_points,
        "point_value_fen": statement.point_value_fen,
        "net_fen": statement.net_fen,
        "benefit_fen": statement.benefit_fen,
        "lines": [
            {
                "kind": line.kind,
                "code": line.code,
                "funder": line.funder,
                "quantity": line.quantity,
                "amount_fen": line.amount_fen,
            }
            for line in lines_of(statement.dealer_id, statement.month)
        ],
    }


@job("periodic", timeout=1800)
def generate_previous_month() -> int:
    """On the 1st: draft statements for the month that just ended."""
    first_of_this = business_today().replace(day=1)
    return len(generate((first_of_this - dt.timedelta(days=1)).replace(day=1), actor="system"))
