"""Logging and working complaints, and the top-10 categories report. Flush, never commit; audited."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from app.complaints.models import COMPLAINT_STATUSES, Complaint
from app.core import audit, tunables
from app.core.clock import utcnow
from app.core.db import db
from app.core.errors import NotFound, ValidationFailed
from app.core.i18n import _l

CATEGORIES = tunables.define(
    "complaints.categories",
    [
        "points_missing",
        "points_expired",
        "tier",
        "benefit",
        "redemption",
        "service_quality",
        "sales",
        "notification",
        "app_problem",
        "privacy",
        "red_packet",
        "other",
    ],
    "Complaint categories customer service may choose from",
)
TEXT_LIMIT = 2000
_FINISHED = ("resolved", "closed")


def _checked(category: str | None, status: str, description: str | None, resolution: str | None) -> None:
    fields: dict[str, list] = {}
    if category is not None and category not in CATEGORIES.value():
        fields["category"] = [_l("Unknown category.")]
    if status not in COMPLAINT_STATUSES:
        fields["status"] = [_l("Unknown status.")]
    if description is not None and not description.strip():
        fields["description"] = [_l("Describe the complaint.")]
    for name, text in (("description", description), ("resolution", resolution)):
        if text is not None and len(text) > TEXT_LIMIT:
            fields.setdefault(name, []).append(_l("At most 2,000 characters."))
    if status in _FINISHED and not (resolution or "").strip():
        fields["resolution"] = [_l("A resolved or closed complaint needs its resolution.")]
    if fields:
        raise ValidationFailed(fields=fields)


def log_complaint(
    member_id: int, *, category: str, description: str, status: str, resolution: str | None, actor: str
) -> Complaint:
    """A new complaint for the member, audited."""
    _checked(category, status, description, resolution)
    now = utcnow()
    complaint = Complaint(
        member_id=member_id,
        category=category,
        status=status,
        description=description.strip(),
        resolution=(resolution or "").strip() or None,
        created_by=actor,
        created_at=now,
        updated_at=now,
        resolved_at=now if status in _FINISHED else None,
    )
    db.session.add(complaint)
    db.session.flush()
    audit.record(
        actor=("staff", actor),
        action="complaint.logged",
        subject=("member", member_id),
        details={"complaint": complaint.id, "category": category, "status": status},
    )
    return complaint


def update_complaint(
    complaint_id: int, member_id: int, *, status: str, resolution: str | None, actor: str
) -> Complaint:
    """Move a complaint on (status, resolution), under its row lock; audited."""
    complaint = db.session.get(Complaint, complaint_id, with_for_update=True)
    if complaint is None or complaint.member_id != member_id:
        raise NotFound()
    _checked(None, status, None, resolution)
    before = complaint.status
    complaint.status = status
    complaint.resolution = (resolution or "").strip() or complaint.resolution
    if status in _FINISHED and complaint.resolved_at is None:
        complaint.resolved_at = utcnow()
    audit.record(
        actor=("staff", actor),
        action="complaint.updated",
        subject=("member", member_id),
        details={"complaint": complaint.id, "from": before, "to": status},
    )
    return complaint


def complaints_of(member_id: int) -> list[Complaint]:
    return list(
        db.session.scalars(
            sa.select(Complaint).where(Complaint.member_id == member_id).order_by(Complaint.created_at.desc())
        )
    )


@dataclass(frozen=True)
class CategoryCount:
    category: str
    complaints: int
    open: int


def top_categories(*, since: dt.datetime, limit: int = 10) -> list[CategoryCount]:
    """The most frequent categories of complaints logged since ``since`` (and how many are still open)."""
    still_open = sa.func.count().filter(Complaint.status.in_(("open", "in_progress")))
    rows = db.session.execute(
        sa.select(Complaint.category, sa.func.count(), still_open)
        .where(Complaint.created_at >= since)
        .group_by(Complaint.category)
        .order_by(sa.func.count().desc(), Complaint.category)
        .limit(limit)
    ).all()
    return [CategoryCount(category, int(count), int(open_count)) for category, count, open_count in rows]
