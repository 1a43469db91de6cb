"""Enrollment on purchase (购车即入会): a delivered car makes its buyer a (pre-enrolled) member.

Matching order (SPEC §2): the buyer's mobile number, else the car's VIN (only when the car's
current owner has no number on file, e.g. an imported club member; a different number on a known
car is a resale to someone new), else a new ``pre_enrolled`` member attributed to the dealer and
advisor. The car is linked, a resale ends the previous ownership, and a pre-enrolled buyer gets an
order enrollment token for the advisor's QR code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from app.core import audit
from app.core.db import db
from app.dealers.models import Dealer, Staff
from app.members import services
from app.members.models import EnrollmentToken, Member, Ownership, Vehicle


@dataclass(frozen=True)
class PurchaseEnrollment:
    member: Member
    vehicle: Vehicle
    ownership: Ownership
    token: EnrollmentToken | None
    created_member: bool
    credited_staff_id: int | None

    def summary(self) -> str:
        made = "created" if self.created_member else "matched"
        token = f", order token #{self.token.id}" if self.token else ""
        return f"member {self.member.member_no} {made}, vehicle {self.vehicle.id} linked{token}"


def _match_buyer(phone: str, vehicle: Vehicle | None) -> Member | None:
    member = services.find_by_phone(phone)
    if member is None and vehicle is not None:
        owner = services.current_owner(vehicle)
        if owner is not None and owner.member.phone_index is None:
            member = owner.member
    return member


def _fill_blanks(member: Member, buyer: dict[str, Any]) -> None:
    """The DMS completes a profile, never overwrites what the member maintains themselves."""
    if member.phone_index is None:
        services.set_phone(member, buyer["phone"])
    for field in ("name", "gender", "birthday", "city"):
        if getattr(member, field) is None and buyer.get(field) is not None:
            setattr(member, field, buyer[field])


def _credited_staff(member: Member, advisor: Staff | None, occurred_at: dt.datetime) -> int | None:
    """Within the protection period the enrolling advisor keeps the credit for the purchase."""
    protected = member.attribution_until is not None and occurred_at <= member.attribution_until
    if protected and member.enrolling_staff_id is not None:
        return member.enrolling_staff_id
    return advisor.id if advisor else None


def _upsert_vehicle(delivery: dict[str, Any], dealer: Dealer) -> Vehicle:
    vehicle = services.vehicle_by_vin(delivery["vin"])
    if vehicle is None:
        vehicle = Vehicle(vin=delivery["vin"], model_code=delivery["model_code"], model_name=delivery["model_name"])
        db.session.add(vehicle)
    vehicle.model_code = delivery["model_code"]
    vehicle.model_name = delivery["model_name"]
    vehicle.model_year = delivery.get("model_year", vehicle.model_year)
    vehicle.purchase_date = delivery["delivered_on"]
    vehicle.price_fen = delivery["price_fen"]
    vehicle.selling_dealer_id = dealer.id
    if delivery.get("plate"):
        vehicle.plate = delivery["plate"].upper()
    db.session.flush()
    return vehicle


def enroll_on_purchase(
    delivery: dict[str, Any],
    *,
    dealer: Dealer,
    advisor: Staff | None,
    occurred_at: dt.datetime,
    source_event_id: int | None,
) -> PurchaseEnrollment:
    """Apply a validated ``vehicle.delivered`` payload. Idempotent for the same buyer and car."""
    buyer = delivery["buyer"]
    existing_vehicle = services.vehicle_by_vin(delivery["vin"])
    member = _match_buyer(buyer["phone"], existing_vehicle)
    created = member is None
    if member is None:
        member = services.create_member(
            channel="purchase",
            status="pre_enrolled",
            phone=buyer["phone"],
            name=buyer["name"],
            gender=buyer.get("gender"),
            birthday=buyer.get("birthday"),
            city=buyer.get("city") or dealer.city,
            customer_type=buyer["customer_type"],
            enrolling_dealer_id=dealer.id,
            enrolling_staff_id=advisor.id if advisor else None,
            enrolled_at=occurred_at,
            attribution_until=services.attribution_deadline(occurred_at),
        )
    else:
        _fill_blanks(member, buyer)
    consent = buyer["consent"]
    services.record_consent(
        member,
        policy_version=consent["policy_version"],
        granted=consent["purposes"],
        channel="dms",
        at=consent["accepted_at"],
    )
    credited_staff_id = _credited_staff(member, advisor, occurred_at)
    vehicle = _upsert_vehicle(delivery, dealer)
    ownership, _new = services.start_ownership(
        member,
        vehicle,
        started_on=delivery["delivered_on"],
        credited_dealer_id=dealer.id,
        credited_staff_id=credited_staff_id,
        source_event_id=source_event_id,
        order_no=delivery["order_no"],
    )
    token = None
    if member.status == "pre_enrolled":
        token = services.mint_order_token(
            member,
            vehicle=vehicle,
            dealer_id=dealer.id,
            staff_id=advisor.id if advisor else None,
            source_event_id=source_event_id,
        )
    audit.record(
        actor=("system", "dms"),
        action="member.enrolled_on_purchase" if created else "member.purchase_linked",
        subject=("member", member.id),
        details={"vehicle": vehicle.id, "order_no": delivery["order_no"], "dealer": dealer.code},
    )
    return PurchaseEnrollment(member, vehicle, ownership, token, created, credited_staff_id)
