"""Members binding cars in the mini-app.

A car the DMS delivered to the member's phone is already theirs. Any other VIN becomes a claim
that a dealer or an agent verifies (purchase invoice, registration) before it is linked. Approving
a claim for a car someone else owns is a resale: the old ownership ends and car-bound benefits go
with the car, points stay with each person.

What a member is told never depends on other members: several members may claim one car (one
pending claim per car and member), and the answer is the same whether or not someone else did;
the competing claims meet in the back-office list. Limits, all program settings: open claims per
member, claims per member per 24 hours, and members per car in the dealer's queue (claims beyond
it are escalated to HQ, still answered as usual).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from app.core import audit, tunables
from app.core.clock import business_today, utcnow
from app.core.db import db
from app.core.errors import Conflict, Forbidden, NotFound, TooManyRequests, ValidationFailed
from app.core.i18n import _l
from app.dealers.services import dealer_by_code
from app.members import services
from app.members.identifiers import VIN_MESSAGES, normalize_vin, vin_problem
from app.members.models import Member, Ownership, Vehicle, VehicleClaim, VehicleServicing, vin_index

MAX_OPEN_CLAIMS = tunables.define(
    "vehicles.max_open_claims_per_member",
    3,
    "Cars one member may have waiting for verification at once",
)
MAX_CLAIMS_PER_DAY = tunables.define(
    "vehicles.max_claims_per_member_per_day",
    5,
    "Cars one member may claim in 24 hours (decided ones count too)",
)
MAX_CLAIMANTS_PER_VIN = tunables.define(
    "vehicles.max_pending_claimants_per_vin",
    3,
    "Members with a pending claim on one car that its dealer reviews; later claims go to HQ only",
)


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


def _chosen_dealer(dealer_code: str | None) -> int | None:
    if dealer_code is None:
        return None
    dealer = dealer_by_code(dealer_code)
    if dealer is None:
        raise ValidationFailed(fields={"dealer_code": [_l("No dealer has this code.")]})
    return dealer.id


def _own_pending(member: Member, index: str) -> VehicleClaim | None:
    return db.session.scalar(
        sa.select(VehicleClaim).where(
            VehicleClaim.vin_index == index, VehicleClaim.member_id == member.id, VehicleClaim.status == "pending"
        )
    )


def _count_claims(*where: Any) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(VehicleClaim).where(*where)) or 0


def _check_member_limits(member: Member) -> None:
    """The member's own limits (their own state only: nothing about other members)."""
    pending = VehicleClaim.member_id == member.id, VehicleClaim.status == "pending"
    if _count_claims(*pending) >= MAX_OPEN_CLAIMS.value():
        raise Conflict(
            _l("Your other cars are still being verified. Please wait for the dealer before adding another.")
        )
    recent = VehicleClaim.member_id == member.id, VehicleClaim.created_at > utcnow() - dt.timedelta(days=1)
    if _count_claims(*recent) >= MAX_CLAIMS_PER_DAY.value():
        raise TooManyRequests(_l("You have added many cars today. Please try again tomorrow."))


def _lock(member: Member, index: str) -> None:
    """The member's row, then the car's claim lock: the member's limits and the car's count of
    claimants hold under concurrency (always in this order: no deadlock)."""
    db.session.execute(sa.select(Member.id).where(Member.id == member.id).with_for_update())
    if db.dialect == "postgresql":
        db.session.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"vehicle-claim:{index}"))))


def bind(member: Member, vin: str, *, plate: str | None = None, dealer_code: str | None = None) -> Binding:
    """Add a car by VIN: ``bound`` when it is already the member's, else a ``pending`` claim routed
    to the dealer the member chose, the car's selling dealer or the enrolling dealer."""
    vin = _checked_vin(vin)
    chosen = _chosen_dealer(dealer_code)
    vehicle = services.vehicle_by_vin(vin)
    if vehicle is not None:
        owner = services.current_owner(vehicle)
        if owner is not None and owner.member_id == member.id:
            return Binding("bound", vehicle, None)
    index = vin_index(vin)
    _lock(member, index)
    mine = _own_pending(member, index)
    if mine is not None:
        return Binding("pending", vehicle, mine)
    _check_member_limits(member)
    others = _count_claims(
        VehicleClaim.vin_index == index, VehicleClaim.status == "pending", VehicleClaim.member_id != member.id
    )
    escalated = others >= MAX_CLAIMANTS_PER_VIN.value()
    routed = chosen or (vehicle.selling_dealer_id if vehicle else None) or member.enrolling_dealer_id
    try:
        with db.session.begin_nested():
            claim = VehicleClaim(
                member_id=member.id,
                vin=vin,
                plate=_plate(plate),
                dealer_id=None if escalated else routed,
                escalated=escalated,
            )
            db.session.add(claim)
            db.session.flush()
    except IntegrityError:  # a double tap that got past the lock (SQLite has no advisory lock)
        mine = _own_pending(member, index)
        if mine is None:
            raise
        return Binding("pending", vehicle, mine)
    audit.record(
        actor=("member", member.id),
        action="vehicle.claimed",
        subject=("member", member.id),
        details={"claim": claim.id, "vehicle": vehicle.id if vehicle else None, "escalated": escalated},
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


def _dealer_scope(dealer_id: int | None) -> sa.ColumnElement[bool]:
    """The claims a dealer's staff review: routed to the dealer, or on a car it sold or serviced;
    escalated claims stay with HQ."""
    sold = sa.exists().where(Vehicle.vin_index == VehicleClaim.vin_index, Vehicle.selling_dealer_id == dealer_id)
    serviced = sa.exists().where(
        Vehicle.vin_index == VehicleClaim.vin_index,
        VehicleServicing.vehicle_id == Vehicle.id,
        VehicleServicing.dealer_id == dealer_id,
    )
    return sa.and_(VehicleClaim.escalated.is_(False), sa.or_(VehicleClaim.dealer_id == dealer_id, sold, serviced))


def _reviews(decider: Decider, claim: VehicleClaim) -> bool:
    if decider.role != "dealer_manager":
        return True
    return bool(
        db.session.scalar(sa.select(sa.exists().where(VehicleClaim.id == claim.id, _dealer_scope(decider.dealer_id))))
    )


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
    if claim is None or not _reviews(decider, claim):  # another dealer's claim: as if there were none
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


@dataclass(frozen=True)
class ClaimInReview:
    claim: VehicleClaim
    #: Other members' pending claims on the same car: the conflict staff resolve (never shown to members).
    competing: int


def pending(reviewer: Decider, limit: int = 100) -> list[ClaimInReview]:
    """Claims waiting for verification, oldest first: every one for HQ roles, a dealer's own for
    its staff (see ``_dealer_scope``)."""
    other = aliased(VehicleClaim)
    competing = (
        sa.select(sa.func.count())
        .where(other.vin_index == VehicleClaim.vin_index, other.status == "pending", other.id != VehicleClaim.id)
        .correlate(VehicleClaim)
        .scalar_subquery()
    )
    query = sa.select(VehicleClaim, competing).where(VehicleClaim.status == "pending")
    if reviewer.role == "dealer_manager":
        query = query.where(_dealer_scope(reviewer.dealer_id))
    rows = db.session.execute(query.order_by(VehicleClaim.created_at, VehicleClaim.id).limit(limit))
    return [ClaimInReview(claim, count) for claim, count in rows]


def for_member(member: Member) -> list[VehicleClaim]:
    return list(
        db.session.scalars(
            sa.select(VehicleClaim).where(VehicleClaim.member_id == member.id).order_by(VehicleClaim.created_at.desc())
        )
    )
