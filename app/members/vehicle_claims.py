"""Members binding cars in the mini-app.

A car the DMS delivered to the member's phone is already theirs. Any other VIN becomes a claim
that a dealer or an agent verifies (purchase invoice, registration) before it is linked; only one
claim per VIN can be open, so two members racing for the same car get one claim and one clear
refusal. Approving a claim for a car someone else owns is a resale: the old ownership ends and
car-bound benefits go with the car, points stay with each person.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.core import audit
from app.core.clock import business_today, utcnow
from app.core.db import db
from app.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.core.i18n import _l
from app.members import services
from app.members.identifiers import VIN_MESSAGES, normalize_vin, vin_problem
from app.members.models import Member, Ownership, Vehicle, VehicleClaim, vin_index


@dataclass(frozen=True)
class Binding:
    outcome: str  # "bound" (already theirs) or "pending" (a claim to verify)
    vehicle: Vehicle | None
    claim: VehicleClaim | None


def _checked_vin(vin: str) -> str:
    vin = normalize_vin(vin)
    if vin_problem(vin):
        raise ValidationFailed(fields={"vin": [VIN_MESSAGES[vin_problem(vin)]]})  # type: ignore[index]
    return vin


def _plate(plate: str | None) -> str | None:
    return plate.replace(" ", "").upper() if plate else None


#: Cars one member may have waiting for verification at once (a claim blocks the VIN for others).
MAX_PENDING_CLAIMS = 3


def bind(member: Member, vin: str, *, plate: str | None = None) -> Binding:
    vin = _checked_vin(vin)
    vehicle = services.vehicle_by_vin(vin)
    if vehicle is not None:
        owner = services.current_owner(vehicle)
        if owner is not None and owner.member_id == member.id:
            return Binding("bound", vehicle, None)
    mine = db.session.scalar(
        sa.select(VehicleClaim).where(
            VehicleClaim.vin_index == vin_index(vin),
            VehicleClaim.member_id == member.id,
            VehicleClaim.status == "pending",
        )
    )
    if mine is not None:
        return Binding("pending", vehicle, mine)
    waiting = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(VehicleClaim)
        .where(VehicleClaim.member_id == member.id, VehicleClaim.status == "pending")
    )
    if waiting >= MAX_PENDING_CLAIMS:
        raise Conflict(
            _l("Your other cars are still being verified. Please wait for the dealer before adding another.")
        )
    try:
        with db.session.begin_nested():
            claim = VehicleClaim(member_id=member.id, vin=vin, plate=_plate(plate))
            db.session.add(claim)
            db.session.flush()
    except IntegrityError:
        raise Conflict(
            _l("This car is already being verified for another member. Please contact your dealer.")
        ) from None
    audit.record(
        actor=("member", member.id),
        action="vehicle.claimed",
        subject=("member", member.id),
        details={"claim": claim.id, "vehicle": vehicle.id if vehicle else None},
    )
    return Binding("pending", vehicle, claim)


#: Roles that may take a car away from its current owner (a resale): higher than the counter.
RESALE_APPROVERS = ("supervisor", "operator")


@dataclass(frozen=True)
class Decider:
    """Who decides: the audit actor, their back-office role and, for a dealer manager, their dealer."""

    actor: str
    role: str
    dealer_id: int | None = None


def _check_authority(claim: VehicleClaim, decider: Decider, approve: bool) -> Ownership | None:
    """A dealer manager decides only for cars their dealer sold or cars we have no record of; only a
    supervisor approves a claim on a car someone else owns. Returns that current owner's link."""
    vehicle = services.vehicle_by_vin(claim.vin)
    if decider.role == "dealer_manager" and vehicle is not None and vehicle.selling_dealer_id != decider.dealer_id:
        raise Forbidden(_l("This car was sold by another dealer. Customer service can verify it."))
    owner = services.current_owner(vehicle) if vehicle is not None else None
    previous = owner if owner is not None and owner.member_id != claim.member_id else None
    if approve and previous is not None and decider.role not in RESALE_APPROVERS:
        raise Forbidden(_l("This car has another owner: a supervisor must approve the transfer."))
    return previous


def decide(
    claim_id: int,
    *,
    approve: bool,
    decider: Decider,
    vehicle_details: dict[str, Any] | None = None,
    note: str | None = None,
) -> VehicleClaim:
    """A dealer or an agent verified the papers (approve) or not (reject)."""
    claim = db.session.get(VehicleClaim, claim_id, with_for_update=True)
    if claim is None:
        raise NotFound()
    if claim.status != "pending":
        raise Conflict(_l("This claim has already been decided."))
    previous = _check_authority(claim, decider, approve)
    actor = decider.actor
    claim.status, claim.decided_by, claim.decided_at, claim.note = (
        "approved" if approve else "rejected",
        actor,
        utcnow(),
        note,
    )
    if approve:
        member = db.session.get(Member, claim.member_id)
        assert member is not None
        vehicle = services.vehicle_by_vin(claim.vin)
        if vehicle is None:
            details = vehicle_details or {}
            if not details.get("model_code") or not details.get("model_name"):
                raise ValidationFailed(fields={"model_code": [_l("Describe the car: it is not in our records.")]})
            vehicle = Vehicle(
                vin=claim.vin,
                model_code=details["model_code"],
                model_name=details["model_name"],
                model_year=details.get("model_year"),
                plate=claim.plate,
            )
            db.session.add(vehicle)
            db.session.flush()
        services.start_ownership(member, vehicle, started_on=business_today())
    audit.record(
        actor=("staff", actor),
        action=f"vehicle.claim_{claim.status}",
        subject=("member", claim.member_id),
        details={"claim": claim.id, "vehicle": vehicle.id if approve else None, "note": note},
    )
    if approve and previous is not None:
        audit.record(
            actor=("staff", actor),
            action="vehicle.ownership_ended",
            subject=("member", previous.member_id),
            details={"vehicle": previous.vehicle_id, "reason": "resale", "claim": claim.id},
        )
    db.session.flush()
    return claim


def unbind(member: Member, vin: str) -> None:
    """The member no longer drives this car (sold it, a family car…). Points stay with them."""
    vehicle = services.vehicle_by_vin(normalize_vin(vin))
    ownership = vehicle and db.session.scalar(
        sa.select(Ownership).where(
            Ownership.vehicle_id == vehicle.id, Ownership.member_id == member.id, Ownership.ended_on.is_(None)
        )
    )
    if not ownership:
        raise NotFound(_l("This car is not linked to your membership."))
    ownership.ended_on, ownership.end_reason = business_today(), "unbound_by_member"
    audit.record(
        actor=("member", member.id),
        action="vehicle.unbound",
        subject=("member", member.id),
        details={"vehicle": ownership.vehicle_id},
    )


def pending(limit: int = 100) -> list[VehicleClaim]:
    return list(
        db.session.scalars(
            sa.select(VehicleClaim)
            .where(VehicleClaim.status == "pending")
            .order_by(VehicleClaim.created_at)
            .limit(limit)
        )
    )


def for_member(member: Member) -> list[VehicleClaim]:
    return list(
        db.session.scalars(
            sa.select(VehicleClaim).where(VehicleClaim.member_id == member.id).order_by(VehicleClaim.created_at.desc())
        )
    )
