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

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker

from app.core.after_commit import is_within
from app.core.clock import utcnow
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
    session = db.session()
    session.connection()  # join a begun transaction, so that its rollback can drop the row
    transaction = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_HELD_BACK, []).append((transaction, entry))
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

_HELD_BACK = "audit_held_back"


def _release(session: Session) -> None:
    held = session.info.pop(_HELD_BACK, [])
    session.add_all(entry for _transaction, entry in held)


def _before_commit(session: Session) -> None:
    """Flush the work first, then the audit rows: the chain lock is taken last and held briefly."""
    if session.in_nested_transaction() or not session.info.get(_HELD_BACK):
        return  # a savepoint is released: the enclosing transaction decides
    session.flush()
    _release(session)


def _reading_the_log(state: ORMExecuteState) -> None:
    """A query of the audit log sees the rows this unit of work recorded (autoflush adds them)."""
    if state.session.info.get(_HELD_BACK) and any(m.class_ is AuditEntry for m in state.all_mappers):
        _release(state.session)


def _rolled_back(session: Session, previous: SessionTransaction) -> None:
    held = session.info.get(_HELD_BACK)
    if held:
        session.info[_HELD_BACK] = [item for item in held if not is_within(item[0], previous)]


def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_HELD_BACK, None)  # committed (already released) or thrown away


def init_session_factory(factory: sessionmaker) -> None:
    """Listen to the session factory's transactions (idempotent: apps share the one factory)."""
    if not event.contains(factory, "before_commit", _before_commit):
        event.listen(factory, "before_commit", _before_commit)
        event.listen(factory, "do_orm_execute", _reading_the_log)
        event.listen(factory, "after_soft_rollback", _rolled_back)
        event.listen(factory, "after_transaction_end", _ended)
