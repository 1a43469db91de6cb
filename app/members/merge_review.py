"""Merge requests as customer service sees them: an agent files one from a member's page (the
other member's number and a reason), a supervisor works the queue with both members side by side,
masked, and approves or rejects (``merging.approve_merge``/``reject_merge``: one decision under the
request's row lock). Showing a member in the queue is a read of that member: audited."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from app.core import audit
from app.core.db import db
from app.core.errors import Conflict, ValidationFailed
from app.core.i18n import _l
from app.members import merging
from app.members.access import member_for_operator
from app.members.identifiers import mask_name, mask_phone, mask_vin
from app.members.models import Member, MemberMerge
from app.operators.models import Operator
from app.points import queries
from app.tiers.policy import current_tier

REASON_LIMIT = 255
#: Which of the two members keeps its number: the one on screen, or the other one.
KEEPS = ("this", "other")


def file_request(
    operator: Operator, member: Member, *, other_member_no: str, keep: str, reason: str, request_id: str
) -> MemberMerge:
    """Ask for ``member`` and the member numbered ``other_member_no`` to become one (the other is
    looked up as this operator may: audited, 404 if not found). Idempotent by ``request_id``."""
    errors: dict[str, list[Any]] = {}
    reason = reason.strip()
    if not reason or len(reason) > REASON_LIMIT:
        errors["reason"] = [_l("Give a reason of at most 255 characters.")]
    if keep not in KEEPS:
        errors["keep"] = [_l("Choose which member keeps its number.")]
    other_member_no = other_member_no.strip().replace(" ", "")
    if not other_member_no or other_member_no == member.member_no:
        errors["other_member_no"] = [_l("Enter the number of another member.")]
    if errors:
        raise ValidationFailed(fields=errors)
    other = member_for_operator(operator, other_member_no, reason="console: merge request")
    if other.id == member.id:  # the other number resolved to this member (merged into it before)
        raise ValidationFailed(fields={"other_member_no": [_l("Enter the number of another member.")]})
    for one in (member, other):
        if one.status in ("merged", "closed"):
            raise Conflict(_l("Member %(member_no)s cannot take part in a merge.", member_no=one.member_no))
    survivor, merged = (member, other) if keep == "this" else (other, member)
    return merging.request_merge(
        survivor.id,
        [merged.id],
        request_key=f"console:{request_id[:48]}",
        requested_by=operator.actor,
        reason=reason,
    )


def _side(operator: Operator, member: Member) -> dict[str, Any]:
    """One member of a request, masked, with what a supervisor weighs (status, cars, points, tier)."""
    audit.record(
        actor=("staff", operator.actor),
        action="member.read",
        subject=("member", member.id),
        reason="console: merge queue",
    )
    balance = queries.balance(member.id)
    return {
        "member_no": member.member_no,
        "status": member.status,
        "name": mask_name(member.name),
        "phone": mask_phone(member.phone),
        "city": member.city,
        "enrolled_at": member.enrolled_at,
        "channel": member.enrollment_channel,
        "vehicles": [mask_vin(o.vehicle.vin) for o in member.ownerships if o.ended_on is None],
        "wechat": len(member.identities),
        "points": balance.available,
        "tier": current_tier(member.id),
    }


def pending(operator: Operator, *, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
    """Requests waiting for a supervisor, oldest first, each with the survivor and the members to
    merge side by side (masked)."""
    query = sa.select(MemberMerge).where(MemberMerge.status == "requested")
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    requests = list(
        db.session.scalars(
            query.order_by(MemberMerge.requested_at, MemberMerge.id).limit(per_page).offset((page - 1) * per_page)
        )
    )
    ids = {i for r in requests for i in (r.survivor_id, *r.merged_ids)}
    members = {m.id: m for m in db.session.scalars(sa.select(Member).where(Member.id.in_(ids)))} if ids else {}
    shown = {member_id: _side(operator, member) for member_id, member in members.items()}
    rows = [
        {
            "request": r,
            "survivor": shown.get(r.survivor_id),
            "merged": [shown[i] for i in r.merged_ids if i in shown],
        }
        for r in requests
    ]
    return rows, total


def requests_of(member_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The merge requests naming this member, newest first, with the other members' numbers: those
    it survives, and the pending ones that would merge it away (once merged away, its number opens
    the survivor's page)."""
    rows = db.session.scalars(
        sa.select(MemberMerge)
        .where(sa.or_(MemberMerge.survivor_id == member_id, MemberMerge.status == "requested"))
        .order_by(MemberMerge.requested_at.desc(), MemberMerge.id.desc())
    )
    mine = [r for r in rows if r.survivor_id == member_id or member_id in r.merged_ids][:limit]
    numbers = dict(
        db.session.execute(
            sa.select(Member.id, Member.member_no).where(
                Member.id.in_({i for r in mine for i in (r.survivor_id, *r.merged_ids)})
            )
        ).all()
    )
    return [
        {
            "id": r.id,
            "status": r.status,
            "source": r.source,
            "survivor": numbers.get(r.survivor_id),
            "merged": [numbers.get(i) for i in r.merged_ids],
            "reason": r.reason,
            "requested_by": r.requested_by,
            "requested_at": r.requested_at,
            "decided_by": r.decided_by,
        }
        for r in mine
    ]


def reject(merge_id: int, *, supervisor: str, reason: str) -> MemberMerge:
    """Reject a request, with the reason the requester will read in the audit trail."""
    reason = reason.strip()
    if not reason or len(reason) > REASON_LIMIT:
        raise ValidationFailed(fields={"reason": [_l("Give a reason of at most 255 characters.")]})
    return merging.reject_merge(merge_id, supervisor=supervisor, reason=reason)
