"""What each DMS event does: thin adapters from stored events to the domain services.

Each handler returns a one-line outcome kept on the inbox row. An event about a car or person we
do not know is *processed* with an outcome saying so (it is not an error to retry).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa

from app.core.db import db
from app.core.inbox import InboundEvent
from app.dealers.models import Dealer
from app.dealers.services import dealer_by_code, staff_at_dealer
from app.jobs.drain import handles
from app.members import enrollment, services
from app.members.models import Member, Ownership
from app.points import earning, reversal
from app.referrals import milestones as referrals
from app.sync.facts import earning_facts, resolve_member
from app.sync.schemas import load_payload
from app.tiers import policy as tiers


def _dealer(event: InboundEvent) -> Dealer:
    dealer = dealer_by_code(event.dealer_code or "")
    if dealer is None:  # validated at intake; a dealer deleted since is an operator problem
        raise LookupError(f"dealer {event.dealer_code} no longer exists")
    return dealer


def dms_payload(event: InboundEvent, body: bytes) -> dict[str, Any]:
    """The typed payload of a stored DMS event (validated at intake)."""
    return load_payload(event.type, json.loads(body)["payload"])


def _occurred(event: InboundEvent) -> dt.datetime:
    return event.occurred_at  # type: ignore[return-value]


def _points_summary(awards: list[earning.EarnedAward]) -> str:
    parts = [f"{a.points} {a.currency}" for a in awards if a.new]
    return ("; earned " + ", ".join(parts)) if parts else "; no points"


def _earn(member: Member, event: InboundEvent, payload: dict[str, Any], dealer: Dealer, **kw: Any) -> str:
    facts = earning_facts(event.type, payload)
    assert facts is not None
    reversal.lock_reference(event.type, facts.ref)
    awards = earning.award_event(
        member,
        event.type,
        facts.attributes,
        ref=facts.ref,
        occurred_at=_occurred(event),
        dealer=dealer,
        source_event_id=event.id,
        **kw,
    )
    if event.type in tiers.QUALIFYING_ACTIVITIES:
        tiers.record_qualifying_activity(member.id, _occurred(event))
    undone = reversal.reapply_undos(event.type, facts.ref)  # a cancellation or refund that came first
    summary = _points_summary(awards)
    return summary + (f"; {len(undone)} reversed at once (undone before it arrived)" if undone else "")


@handles("dms", "vehicle.delivered")
def on_vehicle_delivered(event: InboundEvent, body: bytes) -> str:
    delivery = dms_payload(event, body)
    dealer = _dealer(event)
    advisor = staff_at_dealer(delivery.get("advisor_code"), dealer)
    result = enrollment.enroll_on_purchase(
        delivery, dealer=dealer, advisor=advisor, occurred_at=_occurred(event), source_event_id=event.id
    )
    outcome = result.summary()
    if delivery.get("advisor_code") and advisor is None:
        outcome += f"; unknown advisor {delivery['advisor_code']}"
    beneficiary = result.member
    if delivery.get("credit_member_no"):
        main_member = services.find_by_member_no(delivery["credit_member_no"])
        if main_member is not None and main_member.id != result.member.id:
            beneficiary = main_member
            services.start_ownership(main_member, result.vehicle, started_on=delivery["delivered_on"], role="family")
            outcome += f"; points credited to main member {main_member.member_no}"
    outcome += _earn(beneficiary, event, delivery, dealer, hold_reward=beneficiary.status == "pre_enrolled")
    outcome += _referral_delivery(event, delivery)
    cancelled = reversal.undone_on("vehicle.delivered", delivery["order_no"])
    if cancelled is not None:  # the cancellation was processed first: the car is not theirs after all
        outcome += f"; {_end_order_ownerships(delivery['order_no'], cancelled)} ownership ended (order cancelled)"
    return outcome


def _referral_delivery(event: InboundEvent, delivery: dict[str, Any]) -> str:
    referral = referrals.delivery(
        delivery["buyer"]["phone"],
        order_no=delivery["order_no"],
        model_code=delivery["model_code"],
        price_fen=delivery["price_fen"],
        at=_occurred(event),
    )
    return "" if referral is None else f"; referral {referral.id} delivered ({referral.reward_status})"


def _end_order_ownerships(order_no: str, on: dt.date) -> int:
    ended = 0
    for ownership in db.session.scalars(
        sa.select(Ownership).where(Ownership.order_no == order_no, Ownership.ended_on.is_(None))
    ):
        ownership.ended_on = on
        ownership.end_reason = "order_cancelled"
        ended += 1
    return ended


@handles("dms", "order.cancelled")
def on_order_cancelled(event: InboundEvent, body: bytes) -> str:
    cancellation = dms_payload(event, body)
    order_no = cancellation["order_no"]
    reversed_entries = reversal.undo(
        "full",
        "vehicle.delivered",
        order_no,
        undo_ref=f"cancel:{order_no}",
        source_type=event.type,
        source_event_id=event.id,
        undone_on=cancellation["cancelled_on"],
    )
    ended = _end_order_ownerships(order_no, cancellation["cancelled_on"])
    total = sum(-e.points for e in reversed_entries if e.currency == "reward")
    referral = referrals.cancellation(
        order_no, on=cancellation["cancelled_on"], at=_occurred(event), source_event_id=event.id
    )
    clawed = "" if referral is None else f", referral {referral.id} clawed back {referral.clawed_back_points}"
    return (
        f"order {order_no} cancelled: {len(reversed_entries)} earnings reversed ({total} reward), "
        f"{ended} ownership ended{clawed}"
    )


@handles("dms", "service.completed")
def on_service_completed(event: InboundEvent, body: bytes) -> str:
    visit = dms_payload(event, body)
    vehicle = services.vehicle_by_vin(visit["vin"])
    if vehicle is None:
        return "VIN unknown; nothing to credit"  # outcomes are kept in plain text: no VIN in them
    services.record_service(vehicle, visit["completed_on"], visit["mileage_km"])
    services.record_servicing(vehicle, _dealer(event).id, visit["completed_on"])
    member = resolve_member(("vin_owner", visit["vin"]))
    if member is None:
        return f"vehicle {vehicle.id} has no current owner; service recorded"
    return f"member {member.member_no} service {visit['repair_order_no']}" + _earn(member, event, visit, _dealer(event))


@handles("dms", "service.refunded")
def on_service_refunded(event: InboundEvent, body: bytes) -> str:
    refund = dms_payload(event, body)
    refunded = {
        "parts_fen": refund["parts_fen"],
        "labour_fen": refund["labour_fen"],
        "total_fen": refund["parts_fen"] + refund["labour_fen"],
    }
    reversed_entries = reversal.undo(
        "proportional",
        "service.completed",
        refund["repair_order_no"],
        refunded=refunded,
        undo_ref=f"refund:{refund['refund_no']}",
        source_type=event.type,
        source_event_id=event.id,
    )
    summary = ", ".join(f"{-e.points} {e.currency}" for e in reversed_entries) or "nothing"
    return f"refund {refund['refund_no']} of {refund['repair_order_no']}: reversed {summary}"


@handles("dms", "insurance.renewed")
def on_insurance_renewed(event: InboundEvent, body: bytes) -> str:
    renewal = dms_payload(event, body)
    vehicle = services.vehicle_by_vin(renewal["vin"])
    if vehicle is not None:
        services.record_insurance(vehicle, renewal["ends_on"], renewal.get("insurer"))
    member = resolve_member(("vin_owner", renewal["vin"]))
    if member is None:
        return "VIN unknown or without a current owner; nothing to credit"
    return f"member {member.member_no} policy {renewal['policy_no']}" + _earn(member, event, renewal, _dealer(event))


@handles("dms", "test_drive.completed")
def on_test_drive_completed(event: InboundEvent, body: bytes) -> str:
    drive = dms_payload(event, body)
    referral = referrals.test_drive(drive["phone"], model_code=drive["model_code"], at=_occurred(event))
    noted = "" if referral is None else f"; referral {referral.id} test drive"
    member = resolve_member(("phone", drive["phone"]))
    if member is None:
        return f"test drive {drive['test_drive_id']} by a non-member; nothing to credit"
    return f"member {member.member_no} test drive" + _earn(member, event, drive, _dealer(event)) + noted


@handles("dms", "order.placed")
def on_order_placed(event: InboundEvent, body: bytes) -> str:
    """Only the referral funnel uses orders (points come with the delivery)."""
    placed = dms_payload(event, body)
    referral = referrals.order(
        placed["phone"],
        order_no=placed["order_no"],
        model_code=placed["model_code"],
        price_fen=placed["price_fen"],
        at=_occurred(event),
    )
    return f"order {placed['order_no']}: " + ("no referral" if referral is None else f"referral {referral.id} ordered")
