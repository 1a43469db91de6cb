"""Merging duplicate members into a survivor (SPEC: one customer, one ID).

A merge is one transaction under row locks on every member involved, taken in id order, and is
idempotent by its ``request_key`` (the CRM's event id, or the console's request id). Each package
that keeps rows per member registers a **participant** that moves them (``@participant``); the
members package registers its own (identities, cars, claims, consents, tokens), the ledger's
and the tier's, since those packages sit below it. Packages above register theirs from their own
``merging`` module, imported by their ``register(app)``: benefits, referrals, mall, care and
complaints (``move_rows`` is the common mover); each module's docstring says what does not move.
Audit rows stay where they are (append-only); the merge adds its own. The merged member keeps its
row: status ``merged``, ``merged_into_id`` the survivor, so its member number keeps resolving
(``services.find_by_member_no``).

From the CRM a merge is applied at once (``merge``); from the console it is a request
(``request_merge``) a supervisor approves (``approve_merge``) or rejects.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from app.core import audit, events
from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.i18n import _l
from app.members import services
from app.members.events import MemberChanged, MembersMerged
from app.members.models import (
    Consent,
    EnrollmentToken,
    Member,
    MemberMerge,
    Ownership,
    VehicleClaim,
    WechatIdentity,
)
from app.points import ledger
from app.points.models import PointAccount
from app.tiers import policy as tiers

#: ``fn(survivor, merged, key) -> summary`` moves one package's rows; ``order`` sorts them.
Participant = Callable[[Member, Member, str], dict[str, Any]]
_PARTICIPANTS: list[tuple[int, str, Participant]] = []


def participant(name: str, order: int = 50) -> Callable[[Participant], Participant]:
    """Register a package's mover (re-registering a name replaces it)."""

    def register(fn: Participant) -> Participant:
        _PARTICIPANTS[:] = [p for p in _PARTICIPANTS if p[1] != name]
        _PARTICIPANTS.append((order, name, fn))
        _PARTICIPANTS.sort(key=lambda p: (p[0], p[1]))
        return fn

    return register


def participants() -> list[str]:
    return [name for _order, name, _fn in _PARTICIPANTS]


# --- the members package's own rows -------------------------------------------------------------


def move_rows(
    model: Any,
    survivor: Member,
    merged: Member,
    *conditions: Any,
    column: str = "member_id",
    unless_survivor_has: tuple[str, ...] | None = None,
) -> int:
    """Point the merged member's rows of ``model`` (by ``column``) at the survivor. With
    ``unless_survivor_has`` (the other columns of a unique key that includes ``column``), a row whose
    key the survivor already holds stays with the merged member; ``()`` means "any row at all"."""
    owner = getattr(model, column)
    query = sa.update(model).where(owner == merged.id, *conditions)
    if unless_survivor_has is not None:
        theirs = aliased(model)
        same_key = [getattr(theirs, name) == getattr(model, name) for name in unless_survivor_has]
        query = query.where(~sa.exists().where(getattr(theirs, column) == survivor.id, *same_key))
    result = db.session.execute(query.values({column: survivor.id}).execution_options(synchronize_session="fetch"))
    return int(result.rowcount or 0)


def _move(model: Any, survivor: Member, merged: Member, *conditions: Any) -> int:
    return move_rows(model, survivor, merged, *conditions)


@participant("identities", order=10)
def _identities(survivor: Member, merged: Member, _key: str) -> dict[str, Any]:
    return {"identities": _move(WechatIdentity, survivor, merged)}


@participant("ownerships", order=20)
def _ownerships(survivor: Member, merged: Member, _key: str) -> dict[str, Any]:
    """Cars move; where both were linked to the same car, the merged member's open link ends."""
    today = utcnow().date()
    shared = sa.select(Ownership.vehicle_id).where(Ownership.member_id == survivor.id, Ownership.ended_on.is_(None))
    ended = db.session.execute(
        sa.update(Ownership)
        .where(Ownership.member_id == merged.id, Ownership.ended_on.is_(None), Ownership.vehicle_id.in_(shared))
        .values(ended_on=today, end_reason="merged")
    ).rowcount
    return {"ownerships": _move(Ownership, survivor, merged), "ownerships_ended": int(ended or 0)}


@participant("vehicle_claims", order=30)
def _claims(survivor: Member, merged: Member, _key: str) -> dict[str, Any]:
    """Claims move; a pending claim the survivor also has on the same car is closed as a duplicate."""
    duplicate = sa.select(VehicleClaim.vin_index).where(
        VehicleClaim.member_id == survivor.id, VehicleClaim.status == "pending"
    )
    closed = db.session.execute(
        sa.update(VehicleClaim)
        .where(
            VehicleClaim.member_id == merged.id,
            VehicleClaim.status == "pending",
            VehicleClaim.vin_index.in_(duplicate),
        )
        .values(status="rejected", decided_by="merge", decided_at=utcnow(), note="duplicate after merge")
    ).rowcount
    return {"claims": _move(VehicleClaim, survivor, merged), "claims_closed": int(closed or 0)}


@participant("consents", order=40)
def _consents(survivor: Member, merged: Member, _key: str) -> dict[str, Any]:
    """Consents are evidence (append-only): the merged member's rows stay; per purpose the most
    recent decision of the two members becomes the survivor's current one (a new row, channel merge)."""

    def latest(member_id: int) -> dict[str, Consent]:
        rows = db.session.scalars(sa.select(Consent).where(Consent.member_id == member_id).order_by(Consent.id))
        return {row.purpose: row for row in rows}

    ours, theirs = latest(survivor.id), latest(merged.id)
    copied = 0
    for purpose, decision in theirs.items():
        current = ours.get(purpose)
        if current is not None and (current.recorded_at, current.id) >= (decision.recorded_at, decision.id):
            continue
        if current is not None and current.granted == decision.granted:
            continue
        db.session.add(
            Consent(
                member_id=survivor.id,
                purpose=purpose,
                granted=decision.granted,
                policy_version=decision.policy_version,
                channel="merge",
                recorded_at=utcnow(),
                stated_at=decision.recorded_at,
            )
        )
        copied += 1
    return {"consents_taken_over": copied}


@participant("enrollment_tokens", order=45)
def _tokens(survivor: Member, merged: Member, _key: str) -> dict[str, Any]:
    return {"enrollment_tokens": _move(EnrollmentToken, survivor, merged)}


@participant("points", order=60)
def _points(survivor: Member, merged: Member, key: str) -> dict[str, Any]:
    moved = ledger.move_points(merged.id, survivor.id, key=key)
    return {
        "lots": moved.lots,
        "reward_points": moved.reward_points,
        "debt": moved.debt,
        "tier_points": moved.tier_points,
    }


@participant("tier", order=70)
def _tier(survivor: Member, merged: Member, _key: str) -> dict[str, Any]:
    tier_points = db.session.scalar(sa.select(PointAccount.tier_points).where(PointAccount.member_id == survivor.id))
    return {"tier": tiers.merge_tiers(survivor.id, merged.id, int(tier_points or 0))}


# --- the service --------------------------------------------------------------------------------


def _fill_profile(survivor: Member, merged: Member) -> None:
    """The survivor keeps its own profile and takes what it lacks; the merged row keeps no personal data."""
    for field in ("name", "gender", "birthday", "city", "address", "preferred_dealer_id"):
        if getattr(survivor, field) is None and getattr(merged, field) is not None:
            setattr(survivor, field, getattr(merged, field))
    phone = merged.phone
    merged.phone = merged.phone_index = merged.name = merged.birthday = merged.address = None
    db.session.flush()  # free the phone's unique index before the survivor takes it
    if survivor.phone is None and phone:
        services.set_phone(survivor, phone)


def _lock(ids: list[int]) -> dict[int, Member]:
    rows = db.session.scalars(
        sa.select(Member)
        .where(Member.id.in_(ids))
        .order_by(Member.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {member.id: member for member in rows}


def _apply(merge: MemberMerge, actor: tuple[str, str | int], at: dt.datetime) -> MemberMerge:
    ids = sorted({merge.survivor_id, *merge.merged_ids})
    locked = _lock(ids)
    survivor = locked.get(merge.survivor_id)
    if survivor is None or survivor.status in ("merged", "closed"):
        raise Conflict(_l("The surviving member cannot take a merge."))
    summary: dict[str, Any] = {}
    merged_now: list[int] = []
    for merged_id in merge.merged_ids:
        merged = locked.get(merged_id)
        if merged is None:
            raise NotFound(_l("No such member."))
        if merged.status == "merged":
            if merged.merged_into_id == survivor.id:
                continue  # merged before (another request): nothing left to move
            raise Conflict(_l("This member was already merged into another member."))
        key = f"merge:{merge.id}:{merged.id}"
        moved = {name: fn(survivor, merged, key) for _order, name, fn in _PARTICIPANTS}
        _fill_profile(survivor, merged)
        merged.status, merged.merged_into_id = "merged", survivor.id
        summary[str(merged.id)] = moved
        merged_now.append(merged.id)
        audit.record(
            actor=actor,
            action="member.merged_away",
            subject=("member", merged.id),
            details={"survivor_id": survivor.id, "merge_id": merge.id},
        )
    if survivor.status == "pre_enrolled" and any(locked[i].status != "pre_enrolled" for i in merged_now):
        survivor.status = "active"
    merge.status, merge.applied_at, merge.summary = "applied", at, summary
    audit.record(
        actor=actor,
        action="member.merged",
        subject=("member", survivor.id),
        reason=merge.reason,
        details={"merge_id": merge.id, "merged_ids": merged_now, "source": merge.source},
    )
    db.session.flush()
    events.publish(MemberChanged(survivor.id))
    if merged_now:
        events.publish(MembersMerged(survivor.id, tuple(merged_now), merge.id))
    return merge


def _new_request(
    survivor_id: int, merged_ids: list[int], *, request_key: str, source: str, by: str, reason: str | None
) -> tuple[MemberMerge, bool]:
    existing = db.session.scalar(sa.select(MemberMerge).where(MemberMerge.request_key == request_key))
    if existing is not None:
        if existing.survivor_id != survivor_id or sorted(existing.merged_ids) != sorted(merged_ids):
            raise Conflict(_l("This request id was already used for a different merge."))
        return existing, False
    merged = sorted(set(merged_ids) - {survivor_id})
    if not merged:
        raise ValidationFailed(fields={"merged": [_l("Name at least one member other than the survivor.")]})
    merge = MemberMerge(
        request_key=request_key,
        survivor_id=survivor_id,
        merged_ids=merged,
        source=source,
        status="requested",
        reason=reason,
        requested_by=by,
        requested_at=utcnow(),
    )
    db.session.add(merge)
    db.session.flush()
    return merge, True


def merge(
    survivor_id: int,
    merged_ids: list[int],
    *,
    request_key: str,
    actor: tuple[str, str | int],
    source: str = "crm",
    reason: str | None = None,
) -> MemberMerge:
    """Apply a merge at once (the CRM decided it). A repeated ``request_key`` returns the first."""
    _lock(sorted({survivor_id, *merged_ids}))  # two requests of one key: the second waits, then finds it
    record, new = _new_request(
        survivor_id, merged_ids, request_key=request_key, source=source, by=str(actor[1]), reason=reason
    )
    if not new and record.status != "requested":
        return record
    return _apply(record, actor, utcnow())


def request_merge(
    survivor_id: int, merged_ids: list[int], *, request_key: str, requested_by: str, reason: str
) -> MemberMerge:
    """A console merge request, waiting for a supervisor."""
    for member_id in {survivor_id, *merged_ids}:
        if db.session.get(Member, member_id) is None:
            raise NotFound(_l("No such member."))
    record, new = _new_request(
        survivor_id, merged_ids, request_key=request_key, source="console", by=requested_by, reason=reason
    )
    if new:
        audit.record(
            actor=("operator", requested_by),
            action="member.merge_requested",
            subject=("member", survivor_id),
            reason=reason,
            details={"merge_id": record.id, "merged_ids": record.merged_ids},
        )
    return record


def _pending(merge_id: int) -> MemberMerge:
    record = db.session.get(MemberMerge, merge_id, with_for_update=True)
    if record is None:
        raise NotFound(_l("No such merge request."))
    if record.status != "requested":
        raise Conflict(_l("This merge request was already decided."))
    return record


def approve_merge(merge_id: int, *, supervisor: str) -> MemberMerge:
    """A supervisor approves (not the operator who asked): the merge is applied now."""
    record = _pending(merge_id)
    if record.requested_by == supervisor:
        raise Conflict(_l("A merge must be approved by someone other than the requester."))
    record.decided_by = supervisor
    return _apply(record, ("operator", supervisor), utcnow())


def reject_merge(merge_id: int, *, supervisor: str, reason: str) -> MemberMerge:
    record = _pending(merge_id)
    record.status, record.decided_by = "rejected", supervisor
    audit.record(
        actor=("operator", supervisor),
        action="member.merge_rejected",
        subject=("member", record.survivor_id),
        reason=reason,
        details={"merge_id": record.id},
    )
    db.session.flush()
    return record
