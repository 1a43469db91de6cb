"""Append-only audit log: who did what to which record, when and why.

Every customer-service or staff read of a member record and every manual change writes one row.
The database refuses UPDATE and DELETE on this table (a trigger, see the migrations).
"""

from __future__ import annotations

from typing import Any

from app.core.db import db
from app.core.http import current_request_id
from app.core.models import AuditEntry


def record(
    *,
    actor: tuple[str, str | int],
    action: str,
    subject: tuple[str, str | int],
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit row to the current unit of work (it commits with the change it describes)."""
    entry = AuditEntry(
        actor_type=actor[0],
        actor_id=str(actor[1]),
        action=action,
        subject_type=subject[0],
        subject_id=str(subject[1]),
        reason=reason,
        details=details,
        request_id=current_request_id(),
    )
    db.session.add(entry)
    return entry
