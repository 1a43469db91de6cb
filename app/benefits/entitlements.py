"""What a member has left of each benefit this membership year, from the entitlement ledger.

**Membership year.** Quotas run per membership year (SPEC §5): for member-bound benefits it
starts on the enrollment anniversary, for car-bound ones on the car's purchase anniversary (so a
car's year does not restart when it is sold), both on the Asia/Shanghai calendar.

**Tier changes mid-year.** The quota follows the tier *now*: an upgrade grants the difference at
once; a downgrade revokes what is unused above the lower quota but never takes back a use (the
member keeps what they used; what is left is ``max(0, lower quota − used)``). A tier that pays
with points has a quota of 0 here. Grant and revoke rows are written under the holder's lock when
quota is taken, so every number can be explained from its rows.

**Car-bound** benefits are counted on the car (``vehicle_id``): a resale hands what is left of the
car's year to the next owner (the ownership transfer is ``members.services``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from app.benefits.models import Benefit, EntitlementEntry
from app.core.clock import business_today, to_business
from app.core.db import db
from app.members.models import Member, Ownership, Vehicle
from app.tiers.policy import anniversary


@dataclass(frozen=True)
class Holder:
    """Whose quota a use counts against: the member, or (car-bound) the car."""

    member_id: int
    vehicle_id: int | None

    @property
    def key(self) -> str:
        return f"v{self.vehicle_id}" if self.vehicle_id is not None else f"m{self.member_id}"


@dataclass(frozen=True)
class Entitlement:
    """A holder's position on one benefit in one membership year."""

    year_start: dt.date
    year_end: dt.date  # exclusive
    quota: int | None  # for the current tier; None: unlimited; 0: none (points or not eligible)
    granted: int  # what the rows grant now (grants − revocations)
    used: int  # uses − restores
    unlimited: bool

    @property
    def remaining(self) -> int | None:
        if self.unlimited:
            return None
        return max(0, self.target - self.used)

    @property
    def target(self) -> int:
        """What the grant rows should add up to under the rule in the module docstring."""
        quota = self.quota or 0
        return quota if quota >= self.granted else max(quota, self.used)


def _anchor_of(holder: Holder) -> dt.date:
    if holder.vehicle_id is not None:
        vehicle = db.session.get(Vehicle, holder.vehicle_id)
        if vehicle is not None and vehicle.purchase_date is not None:
            return vehicle.purchase_date
        first = db.session.scalar(
            sa.select(sa.func.min(Ownership.started_on)).where(Ownership.vehicle_id == holder.vehicle_id)
        )
        if first is not None:
            return first
    member = db.session.get(Member, holder.member_id)
    assert member is not None
    return to_business(member.enrolled_at).date()


def membership_year(holder: Holder, day: dt.date | None = None) -> tuple[dt.date, dt.date]:
    anchor = _anchor_of(holder)
    day = day or business_today()
    if day < anchor:
        return anchor, anniversary(anchor)
    years = day.year - anchor.year
    start = anniversary(anchor, years)
    if start > day:
        years -= 1
        start = anniversary(anchor, years)
    return start, anniversary(anchor, years + 1)


def quota_for(benefit: Benefit, tier: str) -> tuple[int | None, bool]:
    """(quota, unlimited) of a tier: a missing tier has 0 (pays points, or is not eligible)."""
    if tier not in benefit.eligible_tiers or tier not in benefit.quotas:
        return 0, False
    quota = benefit.quotas[tier]
    return (None, True) if quota is None else (int(quota), False)


def _holder_filter(holder: Holder, benefit_code: str, year_start: dt.date) -> list[sa.ColumnElement[bool]]:
    where = [EntitlementEntry.benefit_code == benefit_code, EntitlementEntry.year_start == year_start]
    if holder.vehicle_id is not None:
        where.append(EntitlementEntry.vehicle_id == holder.vehicle_id)
    else:
        where += [EntitlementEntry.member_id == holder.member_id, EntitlementEntry.vehicle_id.is_(None)]
    return where


def position(holder: Holder, benefit: Benefit, tier: str, day: dt.date | None = None) -> Entitlement:
    """The holder's entitlement to ``benefit`` in the membership year of ``day`` (no writes)."""
    start, end = membership_year(holder, day)
    quota, unlimited = quota_for(benefit, tier)
    rows = db.session.execute(
        sa.select(EntitlementEntry.kind, sa.func.coalesce(sa.func.sum(EntitlementEntry.quantity), 0))
        .where(*_holder_filter(holder, benefit.code, start))
        .group_by(EntitlementEntry.kind)
    ).all()
    sums = {kind: int(total) for kind, total in rows}
    granted = sums.get("grant", 0) + sums.get("revoke", 0)
    used = -sums.get("use", 0) - sums.get("transfer", 0) - sums.get("restore", 0)  # a share holds a use
    return Entitlement(start, end, quota, granted, used, unlimited)


def lock(holder: Holder, benefit_code: str, year_start: dt.date) -> None:
    """Serialise quota changes of one holder, benefit and year until the transaction ends."""
    if db.dialect == "postgresql":
        key = f"benefit:{holder.key}:{benefit_code}:{year_start.isoformat()}"
        db.session.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(key))))


def _add(
    holder: Holder, benefit_code: str, year_start: dt.date, *, kind: str, quantity: int, key: str, **extra: object
) -> EntitlementEntry:
    entry = EntitlementEntry(
        benefit_code=benefit_code,
        member_id=holder.member_id,
        vehicle_id=holder.vehicle_id,
        year_start=year_start,
        kind=kind,
        quantity=quantity,
        idempotency_key=key,
        **extra,
    )
    db.session.add(entry)
    db.session.flush()
    return entry


def settle_grants(holder: Holder, benefit: Benefit, tier: str, entitlement: Entitlement) -> Entitlement:
    """Write the grant or revocation that brings the rows to the rule's target (under ``lock``)."""
    if entitlement.unlimited or entitlement.target == entitlement.granted:
        return entitlement
    delta = entitlement.target - entitlement.granted
    steps = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(EntitlementEntry)
        .where(
            *_holder_filter(holder, benefit.code, entitlement.year_start),
            EntitlementEntry.kind.in_(("grant", "revoke")),
        )
    )
    kind = "grant" if delta > 0 else "revoke"
    key = f"{kind}:{holder.key}:{benefit.code}:{entitlement.year_start.isoformat()}:{steps}"
    _add(holder, benefit.code, entitlement.year_start, kind=kind, quantity=delta, key=key, tier=tier)
    return Entitlement(
        entitlement.year_start,
        entitlement.year_end,
        entitlement.quota,
        entitlement.target,
        entitlement.used,
        entitlement.unlimited,
    )


def take(holder: Holder, benefit: Benefit, tier: str, *, booking_id: int) -> Entitlement | None:
    """Use one of the holder's quota for a booking, under the lock. None when nothing is left."""
    lock(holder, benefit.code, membership_year(holder)[0])
    current = settle_grants(holder, benefit, tier, position(holder, benefit, tier))  # read under the lock
    if not current.unlimited and (current.remaining or 0) < 1:
        return None
    key = f"use:booking:{booking_id}"
    _add(holder, benefit.code, current.year_start, kind="use", quantity=-1, key=key, tier=tier, booking_id=booking_id)
    return current


def give_back(holder: Holder, benefit_code: str, year_start: dt.date, *, booking_id: int) -> bool:
    """Restore the use of a booking cancelled in time (once, whatever the races)."""
    lock(holder, benefit_code, year_start)
    already = db.session.scalar(
        sa.select(EntitlementEntry.id).where(EntitlementEntry.idempotency_key == f"restore:booking:{booking_id}")
    )
    if already is not None:
        return False
    key = f"restore:booking:{booking_id}"
    _add(holder, benefit_code, year_start, kind="restore", quantity=1, key=key, booking_id=booking_id)
    return True


def history(holder: Holder, benefit_code: str, year_start: dt.date) -> list[EntitlementEntry]:
    return list(
        db.session.scalars(
            sa.select(EntitlementEntry)
            .where(*_holder_filter(holder, benefit_code, year_start))
            .order_by(EntitlementEntry.id)
        )
    )


def hold_for_share(holder: Holder, benefit: Benefit, tier: str, *, share_id: int) -> Entitlement | None:
    """Hold one of the holder's quota for a share (a ``transfer`` row), under the lock. None when
    nothing is left (an unlimited benefit is not shared: there is nothing to hold)."""
    lock(holder, benefit.code, membership_year(holder)[0])
    current = settle_grants(holder, benefit, tier, position(holder, benefit, tier))
    if current.unlimited or (current.remaining or 0) < 1:
        return None
    key = f"transfer:share:{share_id}"
    _add(holder, benefit.code, current.year_start, kind="transfer", quantity=-1, key=key, tier=tier)
    return current


def return_share(holder: Holder, benefit_code: str, year_start: dt.date, *, share_id: int) -> bool:
    """Give an unclaimed share's held use back to the giver (once)."""
    lock(holder, benefit_code, year_start)
    key = f"restore:share:{share_id}"
    if db.session.scalar(sa.select(EntitlementEntry.id).where(EntitlementEntry.idempotency_key == key)) is not None:
        return False
    _add(holder, benefit_code, year_start, kind="restore", quantity=1, key=key, note=f"share {share_id} unclaimed")
    return True
