"""Benefits a partner delivers (``delivered_by = partner``: roadside assistance, airport lounges).

The member books one like any benefit without a slot (``POST /api/v1/me/bookings``): the quota
(car-bound for roadside assistance: the car's) or the points are taken in the booking's
transaction, once per ``request_id``. In that same transaction a ``benefit_partner_orders`` row is
opened (``pending``); after the commit a job asks the partner for the service code (the partner
keys on our ``out_order_no``, so a retried call returns the same code) and stores it (``issued``).
A partner that refuses the order ends it ``failed`` and the booking is cancelled, which gives the
quota or points back.

The partner reports each use by a signed callback (``POST /api/v1/partners/benefit-usage``): the
raw body is stored in the inbox first (idempotent by ``event_id``), then the drain records the
use on the booking exactly as a dealer check-in does (``delivered``, the settlement facts copied
at booking, an audit row, ``BenefitUsed`` → the rating request). A cancel before use restores the
quota or points (the booking's own rule) and voids the code at the partner after the commit.

Lock order, as everywhere in booking: the booking row, then the partner order.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import sqlalchemy as sa

from app import gateways
from app.benefits import booking as bookings
from app.benefits.models import Benefit, Booking, PartnerOrder
from app.core import audit, events, inbox
from app.core.clock import utcnow
from app.core.db import db
from app.core.events import BenefitUsed, BookingCancelled, BookingConfirmed
from app.jobs import job
from app.jobs.drain import handles
from app.members.models import Member, Vehicle

log = logging.getLogger(__name__)

SOURCE = "benefit_partner"
USED = "service.used"
#: A pending order older than this, or a void not done, is sent again by the sweeper.
RESEND_AFTER = dt.timedelta(minutes=2)


def out_order_no(booking_id: int) -> str:
    return f"LB{booking_id:012d}"


def service_of(benefit: Benefit) -> str:
    return benefit.service_type or benefit.code


def order_of(booking_id: int, *, lock: bool = False) -> PartnerOrder | None:
    query = sa.select(PartnerOrder).where(PartnerOrder.booking_id == booking_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.session.scalar(query)


@events.within_transaction(BookingConfirmed)
def open_order(event: BookingConfirmed) -> None:
    """A partner benefit was booked: open its order in the booking's transaction (no read: the
    booking and its benefit are in the session)."""
    row = db.session.get(Booking, event.booking_id)
    if row is None or row.benefit.delivered_by != "partner":
        return
    order = PartnerOrder(
        booking_id=row.id,
        member_id=row.member_id,
        service=service_of(row.benefit),
        out_order_no=out_order_no(row.id),
        status="pending",
        attempts=0,
        created_at=event.at,
    )
    db.session.add(order)
    db.session.flush()
    issue_service_code.after_commit(order.id)


@events.within_transaction(BookingCancelled)
def void_on_cancel(event: BookingCancelled) -> None:
    """A cancel before use (the booking is locked by the cancel): the code is voided at the partner
    after the commit; one not issued yet is voided too (the issue may be on its way)."""
    order = order_of(event.booking_id, lock=True)
    if order is None or order.status not in ("pending", "issued"):
        return
    order.status = "voiding"
    db.session.flush()
    void_service_code.after_commit(order.id)


@job("default", retry=(10, 60, 300, 900, 3600))
def issue_service_code(order_id: int) -> str:
    """Ask the partner for the order's service code and keep it. ``Unavailable`` raises (the job
    is retried); a refusal ends the order and cancels the booking (quota or points come back)."""
    order = db.session.get(PartnerOrder, order_id)
    if order is None or order.status != "pending":
        return order.status if order else "missing"
    member = db.session.get(Member, order.member_id)
    assert member is not None
    row = db.session.get(Booking, order.booking_id)
    assert row is not None
    vehicle = db.session.get(Vehicle, row.vehicle_id) if row.vehicle_id else None
    request = gateways.ServiceOrder(
        order.out_order_no, order.service, member.member_no, member.phone, vehicle.vin if vehicle else None
    )
    try:  # no row is locked over the call: a cancel meanwhile is seen by the conditional UPDATE below
        issued = gateways.benefit_partner().issue(request)
    except gateways.Refused as refused:
        return _refused(order_id, refused)
    stored = db.session.execute(
        sa.update(PartnerOrder)
        .where(PartnerOrder.id == order_id, PartnerOrder.status == "pending")
        .values(
            status="issued",
            partner_order_no=issued.partner_order_no,
            service_code=issued.service_code,
            code_expires_at=issued.expires_at,
            issued_at=utcnow(),
            attempts=PartnerOrder.attempts + 1,
            last_error=None,
        )
        .returning(PartnerOrder.id)
    ).scalar_one_or_none()
    if stored is None:  # cancelled while the partner answered: void what it just issued
        void_service_code.after_commit(order_id)
        return "cancelled meanwhile"
    return "issued"


def _refused(order_id: int, refused: gateways.Refused) -> str:
    """The partner will not deliver: the order fails and the booking is cancelled (given back)."""
    order = db.session.get(PartnerOrder, order_id)
    assert order is not None
    row = bookings.get_for_member(order.member_id, order.booking_id, lock=True)
    order = order_of(row.id, lock=True)
    assert order is not None
    if order.status != "pending":
        return order.status
    order.status = "failed"
    order.attempts += 1
    order.last_error = f"refused {refused.code}: {refused.message}"[:255]
    db.session.flush()
    if row.status == "booked":
        bookings.close(row, utcnow())  # in time (no slot): quota or points back
    audit.record(
        actor=("system", "benefit_partner"),
        action="benefit.partner_refused",
        subject=("booking", row.id),
        details={"code": str(refused.code), "out_order_no": order.out_order_no},
    )
    return "refused"


@job("default", retry=(10, 60, 300, 900, 3600))
def void_service_code(order_id: int) -> str:
    """Void a cancelled order's code at the partner (``Unavailable`` raises: retried)."""
    order = db.session.get(PartnerOrder, order_id)
    if order is None or order.status != "voiding":
        return order.status if order else "missing"
    try:
        gateways.benefit_partner().void(order.out_order_no)
    except gateways.Refused as refused:
        if refused.code != gateways.ALREADY_USED:
            raise
        order.status = "used"  # the partner's usage report records where and when (for review)
        order.last_error = "used at the partner before the void reached it"
        log.warning("benefit partner order %s was used before its void", order.out_order_no)
        return "already used"
    db.session.execute(
        sa.update(PartnerOrder)
        .where(PartnerOrder.id == order_id, PartnerOrder.status == "voiding")
        .values(status="voided", voided_at=utcnow())
    )
    return "voided"


def resend_open_orders(now: dt.datetime | None = None) -> int:
    """Orders whose issue or void job was lost (Redis down, a worker died) are sent again."""
    before = (now or utcnow()) - RESEND_AFTER
    rows = db.session.execute(
        sa.select(PartnerOrder.id, PartnerOrder.status).where(
            PartnerOrder.status.in_(("pending", "voiding")), PartnerOrder.created_at < before
        )
    ).all()
    for order_id, status in rows:
        (issue_service_code if status == "pending" else void_service_code).after_commit(order_id)
    return len(rows)


@job("periodic")
def resend_partner_orders() -> int:
    """Every 5 minutes: partner orders still waiting for their code or their void."""
    return resend_open_orders()


# --- the partner's usage callback ----------------------------------------------------------------


def accept_usage(event: dict, raw_body: bytes) -> bool:
    """Store the verified callback (raw body first); True when it is new (then drained)."""
    stored = inbox.store_event(
        source=SOURCE, external_id=event["event_id"], type=USED, body=raw_body, occurred_at=event["used_at"]
    )
    return stored is not None


@handles(SOURCE, USED)
def handle_usage(_event: inbox.InboundEvent, body: bytes) -> str:
    document = json.loads(body)
    return record_use(
        document["out_order_no"],
        document["service_code"],
        used_at=dt.datetime.fromisoformat(document["used_at"]).astimezone(dt.UTC),
        used_where=document.get("used_where"),
    )


def record_use(order_no: str, service_code: str, *, used_at: dt.datetime, used_where: str | None) -> str:
    """The partner delivered the benefit: the booking is delivered (once), as at a dealer check-in.
    Returns the outcome kept on the inbox row."""
    found = db.session.scalar(sa.select(PartnerOrder.booking_id).where(PartnerOrder.out_order_no == order_no))
    if found is None:
        return "unknown order"
    row = db.session.scalar(
        sa.select(Booking).where(Booking.id == found).with_for_update().execution_options(populate_existing=True)
    )
    order = order_of(found, lock=True)
    assert row is not None and order is not None
    if order.service_code != service_code:
        return "service code does not match the order"
    if order.used_at is not None:
        return "already recorded"
    now = utcnow()
    used_at = min(used_at, now)
    order.status, order.used_at, order.used_where = "used", used_at, (used_where or "")[:128] or None
    if row.status != "booked":  # cancelled first: the use is kept on the order for review
        db.session.flush()
        return f"used after the booking was {row.status}"
    row.status = "delivered"
    row.delivered_at = used_at
    db.session.flush()
    audit.record(
        actor=("partner", SOURCE),
        action="benefit.delivered",
        subject=("booking", row.id),
        details={"benefit": row.benefit_code, "cost_fen": row.cost_fen, "funder": row.funder, "by": "partner"},
    )
    events.publish(BenefitUsed(row.member_id, row.id, row.benefit_code, now))
    return "delivered"
