"""Append-only audit log: who did what to which record, when and why.

Every customer-service or staff read of a member record and every manual change writes one row;
reads and failed sign-ins with ``record_regardless`` so that a refusal (403/404/401), which rolls
the request back, still leaves its row.
The database refuses UPDATE and DELETE on this table (a trigger, see the migrations).
"""

from __future__ import annotations

from typing import Any

from app.core.db import db
from app.core.http import current_request_id, keep_whatever_happens
from app.core.models import AuditEntry


def _entry(
    *,
    actor: tuple[str, str | int],
    action: str,
    subject: tuple[str, str | int],
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    return AuditEntry(
        actor_type=actor[0],
        actor_id=str(actor[1])[:64],  # the column is 64 wide: a long username must not be a 500
        action=action,
        subject_type=subject[0],
        subject_id=str(subject[1])[:64],
        reason=reason,
        details=details,
        request_id=current_request_id(),
    )


def record(
    *,
    actor: tuple[str, str | int],
    action: str,
    subject: tuple[str, str | int],
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit row to the current unit of work (it commits with the change it describes)."""
    entry = _entry(actor=actor, action=action, subject=subject, reason=reason, details=details)
    db.session.add(entry)
    return entry


def record_regardless(
    *,
    actor: tuple[str, str | int],
    action: str,
    subject: tuple[str, str | int],
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """An audit row that outlives a failed request: a read refused (403/404), a failed sign-in.

    It commits with the request when that succeeds, else in its own short transaction after the
    rollback (``core.http.keep_whatever_happens``), so the refusal that rolls the request back
    cannot roll its audit row back too.
    """
    keep_whatever_happens(_entry(actor=actor, action=action, subject=subject, reason=reason, details=details))
