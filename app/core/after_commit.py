"""Work that waits for the unit of work to commit: jobs to enqueue, domain events to announce.

``defer(fn, *args)`` runs ``fn(*args)`` once the current unit of work has committed and its
connection is back in the pool (an eager job then never waits on its caller's connection). A
rollback drops it, and so does the rollback of the *savepoint* it was registered in: work that no
longer exists is never announced. A savepoint that is released keeps its deferred calls; they go
with its enclosing transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from app.core.db import db

log = logging.getLogger(__name__)

_PENDING_KEY = "after_commit_pending"
_READY_KEY = "after_commit_ready"

Deferred = tuple[SessionTransaction, Callable[..., Any], tuple[Any, ...]]


def defer(fn: Callable[..., Any], *args: Any) -> None:
    """Call ``fn(*args)`` after the current unit of work commits (never if it rolls back)."""
    session = db.session()
    session.connection()  # join a begun transaction, so that its rollback can drop this
    transaction = session.get_nested_transaction() or session.get_transaction()
    assert transaction is not None
    session.info.setdefault(_PENDING_KEY, []).append((transaction, fn, args))


def is_within(transaction: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    """Whether ``transaction`` is ``ancestor`` or a savepoint inside it."""
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


def _committed(session: Session) -> None:
    """The outermost transaction committed: its deferred calls may run once the connection is back.
    (SQLAlchemy also fires this when a savepoint is released; that is not the end of the work.)"""
    if session.in_nested_transaction():
        return
    session.info.setdefault(_READY_KEY, []).extend(session.info.pop(_PENDING_KEY, []))


def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    """Run the deferred calls in order; the calls of a function that can take them all at once
    (its ``together`` attribute, given the list of argument tuples: the jobs to enqueue, in one
    Redis round trip) are gathered into one call after the others."""
    if transaction.parent is not None:
        return  # a savepoint ended; the enclosing transaction decides
    gathered: dict[Callable[[list[tuple[Any, ...]]], Any], list[tuple[Any, ...]]] = {}
    for _registered_in, fn, args in session.info.pop(_READY_KEY, []):
        together = getattr(fn, "together", None)
        if together is not None:
            gathered.setdefault(together, []).append(args)
            continue
        _call(fn, *args)
    for together, calls in gathered.items():
        _call(together, calls)


def _call(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("after-commit call %r%r failed", fn, args)


def _rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    """Drop what was registered in the transaction (or savepoint) that rolled back, or inside it."""
    pending: list[Deferred] = session.info.get(_PENDING_KEY, [])
    if pending:
        session.info[_PENDING_KEY] = [item for item in pending if not is_within(item[0], previous_transaction)]


def init_session_factory(factory: sessionmaker) -> None:
    """Listen to the session factory's transactions (idempotent: apps share the one factory)."""
    if not event.contains(factory, "after_commit", _committed):
        event.listen(factory, "after_commit", _committed)
        event.listen(factory, "after_transaction_end", _transaction_ended)
        event.listen(factory, "after_soft_rollback", _rolled_back)
