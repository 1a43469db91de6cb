"""Manual point adjustments by customer service (SPEC §3 "Adjustments").

A reason code is mandatory. Up to the threshold (default 1,000 points either way) an adjustment
applies at once; above it, it waits for a supervisor who is not the requester. Every request,
approval and rejection is audited; the ledger entry points back at the request.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.core import audit, tunables
from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.core.i18n import _l
from app.points import ledger
from app.points.models import AdjustmentRequest

APPROVAL_THRESHOLD = tunables.define(
    "points.adjustment_approval_threshold", 1000, "Adjustments above this many points need a second person"
)
REASON_CODES = tunables.define(
    "points.adjustment_reason_codes",
    [
        "missing_points",
        "goodwill",
        "complaint_compensation",
        "system_error",
        "fraud_correction",
        "duplicate_award",
    ],
    "Reason codes customer service may use for adjustments",
)


def _apply(request: AdjustmentRequest, actor: str) -> None:
    key = f"adjust:{request.id}"
    if request.points > 0:
        posting = ledger.earn(
            ledger.Earning(
                member_id=request.member_id,
                currency="reward",
                points=request.points,
                idempotency_key=key,
                source_type="adjustment",
                source_ref=str(request.id),
                kind="adjust",
                reason_code=request.reason_code,
                note=request.note,
                actor=actor,
            )
        )
    else:
        posting = ledger.spend(
            request.member_id,
            -request.points,
            idempotency_key=key,
            source_type="adjustment",
            source_ref=str(request.id),
            kind="adjust",
            reason_code=request.reason_code,
            note=request.note,
            actor=actor,
        )
    request.entry_id = posting.id
    request.status = "applied"


def _recent_total(member_id: int) -> int:
    """Points adjusted for this member in the last 24 hours, applied or awaiting approval. Counting
    them stops a large adjustment being split into small ones that each skip the second approver.
    The member's point account is locked first, so two concurrent small requests are counted one
    after the other."""
    ledger.lock_account(member_id)
    since = utcnow() - dt.timedelta(hours=24)
    total = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(sa.func.abs(AdjustmentRequest.points)), 0)).where(
            AdjustmentRequest.member_id == member_id,
            AdjustmentRequest.status.in_(("applied", "pending")),
            AdjustmentRequest.requested_at >= since,
        )
    )
    return int(total)


def request_adjustment(
    member_id: int, *, points: int, reason_code: str, note: str, requested_by: str, request_id: str
) -> tuple[AdjustmentRequest, bool]:
    """Apply now (within the threshold) or queue for approval. Returns (request, created)."""
    existing = db.session.scalar(sa.select(AdjustmentRequest).where(AdjustmentRequest.request_id == request_id))
    if existing is not None:
        if existing.member_id != member_id or existing.points != points:
            raise Conflict(_l("This request id was already used for a different operation."))
        return existing, False
    if reason_code not in REASON_CODES.value():
        raise ValidationFailed(fields={"reason_code": [_l("Unknown reason code.")]})
    if points == 0:
        raise ValidationFailed(fields={"points": [_l("An adjustment must change the balance.")]})
    needs_approval = _recent_total(member_id) + abs(points) > APPROVAL_THRESHOLD.value()
    request = AdjustmentRequest(
        member_id=member_id,
        points=points,
        reason_code=reason_code,
        note=note,
        status="pending",
        request_id=request_id,
        requested_by=requested_by,
        requested_at=utcnow(),
    )
    db.session.add(request)
    db.session.flush()
    if not needs_approval:
        _apply(request, requested_by)
        request.decided_by, request.decided_at = requested_by, utcnow()
    audit.record(
        actor=("staff", requested_by),
        action="points.adjustment_requested",
        subject=("member", member_id),
        reason=f"{reason_code}: {note}",
        details={"points": points, "request": request.id, "status": request.status},
    )
    return request, True


def decide(request_id: int, *, approve: bool, decided_by: str, decider_role: str) -> AdjustmentRequest:
    """A supervisor other than the requester approves (applies) or rejects a pending request."""
    request = db.session.get(AdjustmentRequest, request_id, with_for_update=True)
    if request is None:
        raise NotFound()
    if request.status != "pending":
        raise Conflict(_l("This adjustment has already been decided."), details={"status": request.status})
    if decider_role != "supervisor":
        raise Forbidden(_l("Only a supervisor can approve adjustments."))
    if decided_by == request.requested_by:
        raise Forbidden(_l("The approver must be someone other than the requester."))
    if approve:
        _apply(request, decided_by)
    else:
        request.status = "rejected"
    request.decided_by, request.decided_at = decided_by, utcnow()
    audit.record(
        actor=("staff", decided_by),
        action="points.adjustment_approved" if approve else "points.adjustment_rejected",
        subject=("member", request.member_id),
        details={"points": request.points, "request": request.id},
    )
    return request


def pending(limit: int = 100) -> list[AdjustmentRequest]:
    return list(
        db.session.scalars(
            sa.select(AdjustmentRequest)
            .where(AdjustmentRequest.status == "pending")
            .order_by(AdjustmentRequest.requested_at)
            .limit(limit)
        )
    )


def pending_for_member(member_id: int) -> list[AdjustmentRequest]:
    """The member's adjustments waiting for a supervisor."""
    return list(
        db.session.scalars(
            sa.select(AdjustmentRequest)
            .where(AdjustmentRequest.member_id == member_id, AdjustmentRequest.status == "pending")
            .order_by(AdjustmentRequest.requested_at)
        )
    )
