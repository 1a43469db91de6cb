"""Append-only audit log: who did what to which record, when and why.

Every customer-service or staff read of a member record and every manual change writes one row;
reads and failed sign-ins with ``record_regardless`` so that a refusal (403/404/401), which rolls
the request back, still leaves its row.
The database refuses UPDATE and DELETE on this table (a trigger, see the migrations), and chains
every row to the one before it (``core/audit_chain.py``): the chain's writers take turns under a
lock, so ``record`` holds its row back until the unit of work commits (or reads the audit log),
and the lock is held only for the commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.core.clock import utcnow
from app.core.held_back import HeldBack
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
        occurred_at=utcnow(),
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
    """Add an audit row to the current unit of work (it commits with the change it describes).

    The INSERT waits for the commit (or a query of the audit log); a rolled-back savepoint drops it.
    """
    entry = _entry(actor=actor, action=action, subject=subject, reason=reason, details=details)
    _held_back.hold(entry)
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


# --- rows held back until the commit ------------------------------------------------------------


def _add(session: Session, entries: list[AuditEntry]) -> None:
    """The audit rows go in after the work is flushed: the chain lock is taken last and held briefly."""
    session.add_all(entries)


_held_back = HeldBack("audit_held_back", _add, (AuditEntry,))


def init_session_factory(factory: sessionmaker) -> None:
    """Listen to the session factory's transactions (idempotent: apps share the one factory)."""
    _held_back.listen(factory)
