"""The statements a block of code sends to the database, kept as they go by, so a test can count them
(round trips, not time) or look into them. Shared by the tests that pin a hot path's statements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from app.core.db import db


def one_line(_connection: sa.Connection, statement: str, _parameters: Any) -> str:
    """The statement with its white space folded: one line, easy to read in an assertion's message."""
    return " ".join(statement.split())


class Statements:
    """``with Statements() as sent:`` — what goes through the app's engine while the block runs, one
    ``keep(connection, statement, parameters)`` a statement (its text on one line unless told).

    ``until_commit=True`` keeps only the unit of work's own transaction, up to its commit. What runs
    after the commit is not the work's cost: outside quiet hours the test app sends a confirmation
    in-process right after it (a worker does in production), so counting on would depend on the time
    of day. BEGIN and COMMIT are never among the statements (the driver sends them, not a cursor)."""

    def __init__(
        self,
        *,
        until_commit: bool = False,
        keep: Callable[[sa.Connection, str, Any], Any] = one_line,
        engine: sa.Engine | None = None,
    ) -> None:
        self.engine = engine if engine is not None else db.engine
        self.until_commit = until_commit
        self.keep = keep
        self.sent: list[Any] = []
        self.committed = False

    def __enter__(self) -> list[Any]:
        sa.event.listen(self.engine, "before_cursor_execute", self._keep)
        sa.event.listen(self.engine, "commit", self._commit)
        return self.sent

    def __exit__(self, *_exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._keep)
        sa.event.remove(self.engine, "commit", self._commit)

    def _commit(self, _connection: sa.Connection) -> None:
        self.committed = True

    def _keep(self, connection, _cursor, statement, parameters, _context, _executemany) -> None:
        if not (self.until_commit and self.committed):
            self.sent.append(self.keep(connection, statement, parameters))
