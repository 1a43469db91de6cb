"""Rows held back until the unit of work commits (audit rows, CRM outbox rows).

``HeldBack.hold(item)`` keeps an item with the transaction (or savepoint) it was registered in.
Just before the outermost commit (after the flush) the whole list goes to the owner's
``release(session, items)``, which adds rows to the session; so do queries of ``read_models``
in the meantime (a unit of work sees its own rows). The rollback of a savepoint drops what was
registered inside it; a released savepoint's items go with the enclosing transaction. Locks the
release takes are therefore the last of the transaction and held only for the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker

from app.core.after_commit import is_within
from app.core.db import db


class HeldBack:
    def __init__(self, key: str, release: Callable[[Session, list[Any]], None], read_models: tuple[type, ...]):
        self.key = key
        self._release = release
        self.read_models = read_models

    def hold(self, item: Any) -> None:
        self.hold_all([item])

    def hold_all(self, items: list[Any]) -> None:
        """Keep items with the current transaction or savepoint (many at once for a set-based change)."""
        session = db.session()
        session.connection()  # join a begun transaction, so that its rollback can drop the items
        transaction = session.get_nested_transaction() or session.get_transaction()
        session.info.setdefault(self.key, []).extend((transaction, item) for item in items)

    def release(self, session: Session) -> None:
        held = session.info.pop(self.key, [])  # popped first: the release's own queries find nothing
        if held:
            self._release(session, [item for _transaction, item in held])

    def _before_commit(self, session: Session) -> None:
        if session.in_nested_transaction() or not session.info.get(self.key):
            return  # a savepoint is released: the enclosing transaction decides
        session.flush()
        self.release(session)

    def _reading(self, state: ORMExecuteState) -> None:
        if state.session.info.get(self.key) and any(m.class_ in self.read_models for m in state.all_mappers):
            self.release(state.session)

    def _rolled_back(self, session: Session, previous: SessionTransaction) -> None:
        held = session.info.get(self.key)
        if held:
            session.info[self.key] = [item for item in held if not is_within(item[0], previous)]

    def _ended(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None:
            session.info.pop(self.key, None)  # committed (already released) or thrown away

    def listen(self, factory: sessionmaker) -> None:
        """Listen to the session factory's transactions (idempotent: apps share the one factory)."""
        if not event.contains(factory, "before_commit", self._before_commit):
            event.listen(factory, "before_commit", self._before_commit)
            event.listen(factory, "do_orm_execute", self._reading)
            event.listen(factory, "after_soft_rollback", self._rolled_back)
            event.listen(factory, "after_transaction_end", self._ended)
