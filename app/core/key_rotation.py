"""Re-encrypt personal data under the current data key (``flask pii rotate``).

The columns come from the metadata: every column of an ``Encrypted`` type, so a new one cannot be
forgotten. Each table is walked in primary-key pages with a commit per page; a value already made
with the first key of ``LOYALTY_DATA_KEY`` is left alone, so a second run (or a run resumed after
an interruption) rewrites only what is left. Each UPDATE is conditional on the ciphertext it read:
a value the app changed meanwhile was written under the current key already and is not clobbered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import InvalidToken
from sqlalchemy.orm import Session

from app.core.security import Encrypted, PiiCipher


@dataclass(frozen=True)
class EncryptedTable:
    """A table's encrypted columns, as stored (ciphertext, no decryption on the way)."""

    name: str
    key: str
    columns: tuple[str, ...]
    raw: sa.TableClause

    def describe(self) -> str:
        return f"{self.name} ({', '.join(self.columns)})"


@dataclass
class Outcome:
    rows_read: int = 0
    values_rewritten: int = 0
    rows_changed_meanwhile: int = 0  # the app rewrote them first; a re-run catches what is left
    undecryptable: list[tuple[int, str]] = field(default_factory=list)  # (row id, column)


def encrypted_tables(metadata: sa.MetaData) -> list[EncryptedTable]:
    """Every table with encrypted columns, by name; each needs a one-column primary key."""
    found = []
    for table in sorted(metadata.tables.values(), key=lambda t: t.name):
        columns = [c for c in table.columns if isinstance(c.type, Encrypted)]
        if not columns:
            continue
        (key,) = table.primary_key.columns  # keyset pages need a single ordered key
        raw = sa.table(table.name, sa.column(key.name), *(sa.column(c.name, c.type.impl_instance) for c in columns))
        found.append(EncryptedTable(table.name, key.name, tuple(c.name for c in columns), raw))
    return found


def count_rows(session: Session, table: EncryptedTable) -> int:
    return session.execute(sa.select(sa.func.count()).select_from(table.raw)).scalar_one()


def rotate_table(
    session: Session,
    table: EncryptedTable,
    cipher: PiiCipher,
    *,
    batch: int = 1000,
    progress: Callable[[int], Any] = lambda _n: None,
) -> Outcome:
    """Rewrite ``table``'s values not made with the current key, ``batch`` rows per commit."""
    key = table.raw.c[table.key]
    columns = [table.raw.c[name] for name in table.columns]
    update = (
        sa.update(table.raw)
        .where(key == sa.bindparam("_key"), *(c.is_not_distinct_from(sa.bindparam(f"_old_{c.name}")) for c in columns))
        .values({c.name: sa.bindparam(f"_new_{c.name}") for c in columns})
    )
    outcome, after = Outcome(), None
    while True:
        select = sa.select(key, *columns).order_by(key).limit(batch)
        rows = session.execute(select if after is None else select.where(key > after)).all()
        if not rows:
            return outcome
        for row in rows:
            params, rewritten = _rewrite(row, table, cipher, outcome)
            if not rewritten:
                continue
            if session.execute(update, params).rowcount:
                outcome.values_rewritten += rewritten
            else:
                outcome.rows_changed_meanwhile += 1
        session.commit()
        outcome.rows_read += len(rows)
        after = rows[-1][0]
        progress(len(rows))


def _rewrite(row: Any, table: EncryptedTable, cipher: PiiCipher, outcome: Outcome) -> tuple[dict[str, Any], int]:
    """The UPDATE parameters for ``row`` and how many of its values they re-encrypt."""
    params: dict[str, Any] = {"_key": row[0]}
    rewritten = 0
    for name, token in zip(table.columns, row[1:], strict=True):
        new = token
        if token is not None and not cipher.made_with_primary(token):
            try:
                new = (
                    cipher.rotate_bytes(bytes(token)) if isinstance(token, bytes | memoryview) else cipher.rotate(token)
                )
            except (InvalidToken, ValueError):  # no configured key opens it: report it, leave it alone
                outcome.undecryptable.append((row[0], name))
            else:
                rewritten += 1
        params[f"_old_{name}"], params[f"_new_{name}"] = token, new
    return params, rewritten
